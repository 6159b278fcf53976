"""End-to-end fixtures: the project's own commands as subprocesses, against the real dev server."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from demo_service import DemoService
from tests.conftest import SEEN_OUTPUT, WORKER_LOGS

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Cli:
    """Runs ``starter.py``, ``worker.py`` and the ``temporal`` CLI the way a user would, with one environment."""

    env: dict[str, str]
    address: str
    task_queue: str
    token_file: Path
    worker_log: Path

    async def run(self, *args: str, timeout: float = 90) -> Completed:
        process = await asyncio.create_subprocess_exec(
            *args, cwd=ROOT, env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout)
        assert process.returncode is not None
        SEEN_OUTPUT.extend((out.decode(errors="replace"), err.decode(errors="replace")))
        return Completed(process.returncode, out.decode(), err.decode())

    async def starter(self, *args: str, timeout: float = 90) -> Completed:
        return await self.run(sys.executable, "starter.py", *args, timeout=timeout)

    async def temporal(self, *args: str) -> Completed:
        return await self.run("temporal", *args, "--address", self.address)

    async def start_worker(self, *extra: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
        WORKER_LOGS.append(self.worker_log)
        log = self.worker_log.open("ab")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "worker.py", "--task-queue", self.task_queue, *extra, cwd=ROOT, env=env or self.env,
            stdout=log, stderr=log,
        )
        log.close()
        return process


@pytest.fixture
async def cli(
    dev_env: WorkflowEnvironment, demo: DemoService, token_file: Path, task_queue: str, tmp_path: Path
) -> AsyncIterator[Cli]:
    address = dev_env.client.service_client.config.target_host
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_NAMESPACE": "default",
        "DEMO_API_URL": demo.url,
        "DEMO_API_TOKEN_FILE": str(token_file),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DEMO_API_TOKEN", None)
    yield Cli(env=env, address=address, task_queue=task_queue, token_file=token_file,
              worker_log=tmp_path / "worker.log")


@pytest.fixture
async def worker(cli: Cli) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python worker.py`` on the test's task queue; stopped with SIGTERM, which must exit 0."""
    process = await cli.start_worker()
    yield process
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
        assert code == 0, f"worker exited {code} on SIGTERM: {cli.worker_log.read_text()[-2000:]}"


async def eventually(check: Callable[[], Awaitable[bool]], *, attempts: int = 120, pause: float = 0.5) -> None:
    """Wait until ``check`` holds (a bounded wait for a state, not a timing assertion)."""
    for _ in range(attempts):
        if await check():
            return
        await asyncio.sleep(pause)
    raise AssertionError("condition never held")
