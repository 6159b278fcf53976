"""The chaos script, small: real dev server, demo service and worker processes; the worker SIGKILLed, the server
restarted; every job must end as expected, once.

Also: a worker killed while a submit is in flight is noticed by the heartbeat, not after minutes.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from types import ModuleType

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from jobspec import load_spec, resolve_spec
from workflows import JobRequest, JobState, LongRunningJob

ROOT = Path(__file__).resolve().parents[2]
CHAOS = ROOT / "bench" / "chaos.py"
RUN_TIMEOUT = 170  # the run itself takes 20 to 80 s here (a killed submit waits out its 60 s heartbeat timeout)


def summary_numbers(stdout: str) -> dict[str, int]:
    """The integer rows of the printed summary table: ``label  value  requirement``."""
    assert "== chaos summary ==" in stdout, stdout[-3000:]
    table = stdout.split("== chaos summary ==", 1)[1]
    numbers: dict[str, int] = {}
    for line in table.splitlines():
        match = re.match(r"^(\S.*?)\s{2,}(-?\d+)(?:\s|$)", line)
        if match:
            numbers[match.group(1)] = int(match.group(2))
    return numbers


def run_chaos(*args: str) -> subprocess.CompletedProcess[str]:
    process = subprocess.Popen(
        [sys.executable, str(CHAOS), *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: the script then stops every process it started.
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
        pytest.fail(f"chaos.py did not finish in {RUN_TIMEOUT}s:\n{out[-3000:]}\n{err[-2000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.timeout(RUN_TIMEOUT + 70)
def test_small_chaos_run_ends_every_job_correctly_and_once() -> None:
    jobs = 8
    # Jobs start over 2 s, so a kill may land during a submit (its heartbeat timeout, 60 s, bounds that). Timer
    # polling only, to stay short: an activity-polling job waits out its heartbeat timeout after a kill. The
    # default run of the script covers both.
    completed = run_chaos(
        "--jobs", str(jobs), "--kills", "1", "--work-seconds", "5", "--poll-interval", "0.5", "--start-spread", "2",
        "--max-wait", "100", "--seed", "20261204", "--activity-share", "0",
    )
    report = f"exit {completed.returncode}\n{completed.stdout[-4000:]}\n{completed.stderr[-2000:]}"
    assert completed.returncode == 0, report
    numbers = summary_numbers(completed.stdout)
    assert numbers["jobs"] == jobs, report
    assert numbers["jobs finished correctly"] == jobs, report
    assert numbers["jobs created (demo service)"] == jobs, report
    assert numbers["submission keys with exactly 1 job"] == jobs, report
    assert numbers["workflows with exactly 1 job"] == jobs, report
    assert numbers["duplicates"] == 0, report
    assert numbers["stuck"] == 0, report
    assert numbers["lost"] == 0, report
    assert numbers["workflow-task failures"] == 0, report
    assert numbers["worker SIGKILLs"] == 1, report
    assert numbers["dev server restarts"] == 1, report
    assert "workflow-task timeouts" in numbers, report
    assert "RESULT: PASS" in completed.stdout, report


def load_chaos() -> ModuleType:
    spec = importlib.util.spec_from_file_location("longjobs_bench_chaos", CHAOS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


# The killed submit is retried once its heartbeat timeout (60 s) passes; this bound leaves room for that on a
# loaded machine, and is well below the 3-minute start-to-close timeout the job would otherwise wait out.
PROMPT_RECOVERY_SECONDS = 100


@pytest.mark.timeout(220)
def test_worker_killed_during_submit_recovers_promptly() -> None:
    chaos = load_chaos()

    async def scenario() -> None:
        tmp = Path(tempfile.mkdtemp(prefix="longjobs-chaos-submit-"))
        stack = chaos.Stack(tmp=tmp, temporal=chaos.find_temporal(), task_queue=f"chaos-{uuid.uuid4().hex[:8]}")
        try:
            await stack.start_dev_server()
            await stack.start_demo()
            stack.start_worker()
            await stack.wait_worker_ready()
            client = await Client.connect(stack.address, data_converter=pydantic_data_converter)
            # Holds the first submit for 30 s (then answers 503): the activity is running when the worker dies.
            await chaos.inject_fault(stack.demo_url, {"match": "submit", "status": 503, "delay_seconds": 30})
            spec = resolve_spec(load_spec("demo"), {"base_url": stack.demo_url}, environ={})
            handle = await client.start_workflow(
                LongRunningJob.run,
                JobRequest(api="demo", spec=spec, input={"work_seconds": 1}, poll_interval_seconds=0.5),
                id=f"chaos-submit-kill-{uuid.uuid4().hex[:8]}", task_queue=stack.task_queue,
            )
            for _ in range(200):
                if (await chaos.demo_stats(stack.demo_url))["submit_requests"] >= 1:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the submit never reached the demo service")
            stack.worker.kill9()
            stack.start_worker()
            await stack.wait_worker_ready()
            result = await asyncio.wait_for(handle.result(), PROMPT_RECOVERY_SECONDS)
            assert result.state is JobState.SUCCEEDED
            assert (await chaos.demo_stats(stack.demo_url))["jobs_created"] == 1
        finally:
            await asyncio.to_thread(stack.teardown)
            shutil.rmtree(tmp, ignore_errors=True)

    asyncio.run(scenario())
