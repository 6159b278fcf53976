"""``watch``: plain lines when piped, a rich live view on a terminal, and the job's outcome as the exit code."""

from __future__ import annotations

import asyncio
import re
import shlex
import shutil
import sys
import uuid

import pytest
from temporalio.testing import WorkflowEnvironment

from demo_service import DemoService
from tests.conftest import demo_request
from tests.e2e.conftest import Cli
from workflows import LongRunningJob

PERCENT = re.compile(r"\s(\d+)%\s")


async def _start(dev_env: WorkflowEnvironment, cli: Cli, demo: DemoService, work: dict[str, object]) -> str:
    workflow_id = f"op-watch-{uuid.uuid4().hex[:12]}"
    request = demo_request(demo, time_skipping=False, input=work, poll_interval_seconds=1)
    await dev_env.client.start_workflow(LongRunningJob.run, request, id=workflow_id, task_queue=cli.task_queue)
    return workflow_id


async def test_watch_piped_prints_plain_lines_and_exits_with_the_outcome(
    cli: Cli, worker: asyncio.subprocess.Process, demo: DemoService, dev_env: WorkflowEnvironment
) -> None:
    ok_id = await _start(dev_env, cli, demo, {"work_polls": 5})
    bad_id = await _start(dev_env, cli, demo, {"work_polls": 2, "fail": "GPU on fire"})
    ok, bad, unknown = await asyncio.gather(
        cli.starter("watch", ok_id, timeout=60),
        cli.starter("watch", bad_id, timeout=60),
        cli.starter("watch", f"op-watch-missing-{uuid.uuid4().hex[:8]}"),
    )

    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "\x1b" not in ok.stdout  # no control codes in a pipe
    lines = ok.stdout.strip().splitlines()
    assert len(lines) >= 4, ok.stdout
    percents = [int(match.group(1)) for line in lines if (match := PERCENT.search(line + " "))]
    assert percents == sorted(percents) and len(set(percents)) >= 3 and percents[-1] == 100, ok.stdout
    assert " succeeded " in lines[-2] and "polls 5" in lines[-2], ok.stdout
    assert lines[-1].startswith(f"job {ok_id} succeeded"), ok.stdout

    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert " failed " in bad.stdout.splitlines()[-2]
    assert bad.stdout.strip().splitlines()[-1].startswith(f"job {bad_id} failed: JobFailed:")
    assert "GPU on fire" in bad.stdout

    assert unknown.returncode == 2
    assert unknown.stdout == ""
    assert unknown.stderr.strip().splitlines() == [unknown.stderr.strip()]
    assert "no job with id" in unknown.stderr and "Traceback" not in unknown.stderr


async def test_watch_on_a_terminal_draws_a_rich_progress_bar(
    cli: Cli, worker: asyncio.subprocess.Process, demo: DemoService, dev_env: WorkflowEnvironment
) -> None:
    forced_id = await _start(dev_env, cli, demo, {"work_polls": 3})
    forced_cli = Cli({**cli.env, "LONGJOBS_FORCE_TERMINAL": "1", "COLUMNS": "100"}, cli.address, cli.task_queue,
                     cli.token_file, cli.worker_log)
    runs = [forced_cli.starter("watch", forced_id, timeout=60)]
    script = shutil.which("script")
    if script:  # a real pseudo-terminal, as a person at a terminal has
        pty_id = await _start(dev_env, cli, demo, {"work_polls": 3})
        command = shlex.join([sys.executable, "starter.py", "watch", pty_id])
        runs.append(cli.run(script, "-qfec", f"COLUMNS=100 {command}", "/dev/null", timeout=60))
    done = await asyncio.gather(*runs)
    for run in done:
        assert run.returncode == 0, run.stdout + run.stderr
        assert "\x1b[" in run.stdout  # the live view redraws in place
        assert "━" in run.stdout  # rich's bar
        assert "100%" in run.stdout and "succeeded" in run.stdout
        assert "╭" in run.stdout  # the panel
    if not script:
        pytest.skip("no `script` here: the pseudo-terminal run was skipped (the forced-terminal one passed)")
