"""A real pygeoapi (OGC API - Processes 1.0, from PyPI) on a free loopback port, started and stopped by the tests.

The server gets a configuration written here: the TinyDB process manager (asynchronous execution, jobs in a
file), pygeoapi's own ``HelloWorld`` process, and ``slow`` (``slow_process.py``), a job slow enough to cancel.
Its ``server.url`` is the bound address, so the ``Location`` headers it answers are on the spec's origin.
The only reason to skip is pygeoapi not being installed; anything else that goes wrong fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

PYGEOAPI_MISSING = (
    "pygeoapi is not installed: pip install -e '.[thirdparty]' to run the OGC API - Processes test against a real "
    "server"
)
SERVER_SCRIPT = Path(__file__).with_name("_serve_pygeoapi.py")
START_TIMEOUT = 20.0  # seconds; it takes about one on a laptop


def pygeoapi_config(url: str, workdir: Path) -> dict[str, Any]:
    """A minimal pygeoapi configuration: what its schema requires, the TinyDB manager and one process."""
    output_dir = workdir / "outputs"
    output_dir.mkdir()
    return {
        "server": {
            "bind": {"host": "127.0.0.1", "port": int(url.rsplit(":", 1)[1])},
            "url": url,
            "mimetype": "application/json; charset=UTF-8",
            "encoding": "utf-8",
            "languages": ["en-US"],
            "pretty_print": False,
            "limits": {"default_items": 10, "max_items": 50},
            "map": {"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png", "attribution": "OpenStreetMap"},
            "manager": {"name": "TinyDB", "connection": str(workdir / "jobs.db"), "output_dir": str(output_dir)},
        },
        "logging": {"level": "ERROR"},
        "metadata": {
            "identification": {
                "title": "longjobs test server",
                "description": "pygeoapi started by the longjobs tests",
                "keywords": ["longjobs"],
                "keywords_type": "theme",
                "terms_of_service": "https://example.org/terms",
                "url": "https://example.org",
            },
            "license": {"name": "CC-BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/"},
            "provider": {"name": "longjobs tests", "url": "https://example.org"},
            "contact": {"name": "longjobs tests", "email": "tests@example.org", "url": "https://example.org"},
        },
        "resources": {
            "hello-world": {"type": "process", "processor": {"name": "HelloWorld"}},
            "slow": {"type": "process", "processor": {"name": "slow_process.SlowProcessor"}},
        },
    }


def _log_tail(log: Path, lines: int = 40) -> str:
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"


def _wait_until_serving(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Until ``GET /processes`` lists both processes; fail (never skip) if the server dies or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"pygeoapi exited with {process.returncode} before serving; its output:\n{_log_tail(log)}")
        try:
            response = httpx.get(f"{url}/processes", params={"f": "json"}, timeout=1.0)
        except httpx.TransportError as exc:  # the socket listens from the start: a read times out until then
            last_error = repr(exc)
        else:
            if response.status_code == 200:
                ids = sorted(p.get("id") for p in response.json().get("processes", []))
                if ids == ["hello-world", "slow"]:
                    return
                pytest.fail(f"pygeoapi serves processes {ids!r}; its output:\n{_log_tail(log)}")
            last_error = f"HTTP {response.status_code}: {response.text[:200]}"
        time.sleep(0.1)
    pytest.fail(f"pygeoapi did not serve within {START_TIMEOUT:g}s ({last_error}); its output:\n{_log_tail(log)}")


@pytest.fixture(scope="module")
def pygeoapi_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a running pygeoapi, e.g. ``http://127.0.0.1:41234``."""
    if importlib.util.find_spec("pygeoapi") is None:
        pytest.skip(PYGEOAPI_MISSING)
    workdir = tmp_path_factory.mktemp("pygeoapi")
    log = workdir / "server.log"
    # Bind here and hand the listening socket to the server: the port is known before the config is written
    # (server.url must name it) and nothing else can take it in between.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        config = workdir / "pygeoapi-config.yml"
        config.write_text(json.dumps(pygeoapi_config(url, workdir), indent=2), encoding="utf-8")  # JSON is YAML
        env = {**os.environ, "PYGEOAPI_CONFIG": str(config), "PYGEOAPI_OPENAPI": str(workdir / "openapi.yml")}
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, str(SERVER_SCRIPT), str(listener.fileno())],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=(listener.fileno(),),
            )
    try:
        _wait_until_serving(process, url, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
