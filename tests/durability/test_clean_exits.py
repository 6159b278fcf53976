"""Every command exits with its real code every time, not most of the time.

The SDK's native core can abort the interpreter at exit once a client or worker was used (sdk-python issue
300: ``Fatal Python error: PyGILState_Release``, exit 134 or 139), and only now and then; so each command here
runs many times against the dev server, and every exit code is counted. A wrong one fails the test with the
whole distribution and the stderr of one run per wrong code.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from demo_service import DemoService
from tests.conftest import demo_request, start_worker, unique_id
from workflows import JobState, LongRunningJob

ROOT = Path(__file__).resolve().parents[2]
RUNS = 100
# A second command shows the same for exit 0; fewer runs keep the suite short (the 100 above are the proof).
SUCCESS_RUNS = 30
WORKER_RUNS = 20
# Commands at once: about 0.5 s of CPU each, so 100 of them take about 30 s on 2 cores.
CONCURRENCY = 8
WORKERS_AT_ONCE = 4
COMMAND_TIMEOUT = 60  # a bound on one command (a hang is a wrong exit too), not a timing assertion
READY_LINE = "worker running on task queue"


@dataclass
class Tally:
    """Exit codes of many runs of one command, with the stderr of the first run of each code."""

    codes: Counter[int] = field(default_factory=Counter)
    stderr: dict[int, str] = field(default_factory=dict)

    def add(self, code: int, stderr: str) -> None:
        self.codes[code] += 1
        self.stderr.setdefault(code, stderr)

    def report(self, expected: int) -> str:
        lines = [f"exit codes: {dict(sorted(self.codes.items()))} (expected {expected} every time)"]
        for code, text in sorted(self.stderr.items()):
            if code != expected:
                lines.append(f"--- stderr of a run that exited {code}:\n{text[-2000:]}")
        return "\n".join(lines)


@pytest.fixture
def environ(dev_env: WorkflowEnvironment, demo: DemoService, token_file: Path) -> dict[str, str]:
    """The environment a user runs the commands with (as in tests/e2e)."""
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": "default",
        "DEMO_API_URL": demo.url,
        "DEMO_API_TOKEN_FILE": str(token_file),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DEMO_API_TOKEN", None)
    return env


async def command(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run ``python ARGS...`` in the project root; return its exit code and stderr (-9: killed after a hang)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, err = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        return -9, f"no exit within {COMMAND_TIMEOUT} s"
    assert process.returncode is not None
    return process.returncode, err.decode(errors="replace")


async def repeatedly(times: int, at_once: int, run: Callable[[int], Awaitable[tuple[int, str]]]) -> Tally:
    tally = Tally()
    gate = asyncio.Semaphore(at_once)

    async def one(n: int) -> None:
        async with gate:
            tally.add(*await run(n))

    await asyncio.gather(*(one(n) for n in range(times)))
    return tally


async def test_status_of_an_unknown_job_exits_2_every_time(environ: dict[str, str]) -> None:
    unknown = unique_id("no-such-job")
    tally = await repeatedly(RUNS, CONCURRENCY, lambda _: command(environ, "starter.py", "status", unknown))
    assert tally.codes == {2: RUNS}, tally.report(2)
    assert f"no job with id {unknown!r}" in tally.stderr[2]


@pytest.fixture
async def finished_job(
    dev_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> AsyncIterator[str]:
    """A job that has succeeded, with a worker still running to answer status queries about it."""
    async with start_worker(dev_env.client, http, task_queue, worker_environ):
        handle = await dev_env.client.start_workflow(
            LongRunningJob.run, demo_request(demo, time_skipping=False, poll_interval_seconds=0.2),
            id=unique_id("finished"), task_queue=task_queue,
        )
        result = await asyncio.wait_for(handle.result(), COMMAND_TIMEOUT)
        assert result.state is JobState.SUCCEEDED
        yield handle.id


async def test_status_of_a_finished_job_exits_0_every_time(environ: dict[str, str], finished_job: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "starter.py", "status", finished_job, "--json", cwd=ROOT, env=environ,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT)
    assert process.returncode == 0 and json.loads(out)["state"] == "succeeded", out
    status_of_finished = ("starter.py", "status", finished_job)
    tally = await repeatedly(SUCCESS_RUNS, CONCURRENCY, lambda _: command(environ, *status_of_finished))
    assert tally.codes == {0: SUCCESS_RUNS}, tally.report(0)


async def stopped_worker(env: dict[str, str], task_queue: str, log: Path, *, early: bool) -> tuple[int, str]:
    """Start ``worker.py``, send it SIGTERM once it runs (``early``: at a random moment while it starts up)."""
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "worker.py", "--task-queue", task_queue, cwd=ROOT, env=env, stdout=out, stderr=out
        )
    try:
        if early:
            # Past the interpreter's own start (before which no Python handler can exist): imports, connect.
            await asyncio.sleep(random.uniform(0.3, 1.5))
        else:
            deadline = time.monotonic() + COMMAND_TIMEOUT
            while READY_LINE not in log.read_text(errors="replace"):
                if process.returncode is not None or time.monotonic() > deadline:
                    return process.returncode if process.returncode is not None else -9, log.read_text()
                await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), COMMAND_TIMEOUT)
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    return code, log.read_text(errors="replace")


async def test_worker_exits_0_on_sigterm_every_time(environ: dict[str, str], task_queue: str, tmp_path: Path) -> None:
    tally = await repeatedly(
        WORKER_RUNS, WORKERS_AT_ONCE,
        lambda n: stopped_worker(environ, task_queue, tmp_path / f"worker-{n}.log", early=False),
    )
    assert tally.codes == {0: WORKER_RUNS}, tally.report(0)
    assert READY_LINE in tally.stderr[0]


async def test_worker_exits_0_on_sigterm_while_starting_every_time(
    environ: dict[str, str], task_queue: str, tmp_path: Path
) -> None:
    tally = await repeatedly(
        WORKER_RUNS, WORKERS_AT_ONCE,
        lambda n: stopped_worker(environ, task_queue, tmp_path / f"worker-{n}.log", early=True),
    )
    assert tally.codes == {0: WORKER_RUNS}, tally.report(0)
