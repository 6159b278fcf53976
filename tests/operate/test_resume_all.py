"""``list`` and ``resume --all``: one credential fix, every paused job resumed, against the real dev server."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from temporalio.testing import WorkflowEnvironment

from demo_service import DemoService
from tests.conftest import demo_request
from tests.e2e.conftest import Cli, eventually
from workflows import JobResult, LongRunningJob

JOBS = 50


async def _listed(cli: Cli, *args: str) -> list[dict[str, Any]]:
    done = await cli.starter("list", *args, "--json")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


async def test_resume_all_resumes_every_paused_job_once(
    cli: Cli, worker: asyncio.subprocess.Process, demo: DemoService, dev_env: WorkflowEnvironment
) -> None:
    prefix = f"op-batch-{uuid.uuid4().hex[:8]}-"
    ids = [f"{prefix}{n:03d}" for n in range(JOBS)]
    demo.state.token = "rotated"  # the API rotated its token: every submit answers 401 until the file is fixed
    request = demo_request(demo, time_skipping=False, input={"work_polls": 1}, poll_interval_seconds=1)
    await asyncio.gather(*(
        dev_env.client.start_workflow(LongRunningJob.run, request, id=workflow_id, task_queue=cli.task_queue)
        for workflow_id in ids
    ))

    async def all_paused() -> bool:
        listed = await _listed(cli, "--state", "auth_paused", "--api", "demo", "--limit", "500")
        return sum(str(row["workflow_id"]).startswith(prefix) for row in listed) == JOBS

    await eventually(all_paused, attempts=60, pause=0.5)  # visibility lags the workflows a little
    listed = await _listed(cli, "--id-prefix", prefix, "--limit", "500")
    assert sorted(row["workflow_id"] for row in listed) == ids
    assert {(row["api"], row["state"], row["status"]) for row in listed} == {("demo", "auth_paused", "RUNNING")}
    starts = [row["start_time"] for row in listed]
    assert starts == sorted(starts, reverse=True)  # newest first
    assert demo.state.jobs_created == 0

    cli.token_file.write_text("rotated")
    # --id-prefix keeps other tests' paused jobs on this shared dev server out of the count.
    resumed = await cli.starter("resume", "--all", "--state", "auth_paused", "--api", "demo", "--id-prefix", prefix,
                                "--note", "rotated the demo token")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.strip() == f"resumed {JOBS} jobs (api demo, ids {prefix}*)", resumed.stdout

    gate = asyncio.Semaphore(10)

    async def result(workflow_id: str) -> JobResult:
        async with gate:
            return await dev_env.client.get_workflow_handle_for(LongRunningJob.run, workflow_id).result()

    results = await asyncio.wait_for(asyncio.gather(*(result(workflow_id) for workflow_id in ids)), 60)
    assert {r.state.value for r in results} == {"succeeded"}
    assert demo.state.jobs_created == JOBS
    assert len({r.job_id for r in results}) == JOBS

    again = await cli.starter("resume", "--all", "--state", "auth_paused", "--api", "demo", "--id-prefix", prefix)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.startswith("0 jobs paused"), again.stdout
    assert demo.state.jobs_created == JOBS


async def test_list_and_resume_bad_input_is_one_line_exit_2(cli: Cli) -> None:
    cases = [
        ("list", "--state", "sleeping"),
        ("list", "--api", 'demo" OR WorkflowId != "'),
        ("list", "--limit", "0"),
        ("resume",),
        ("resume", "--all"),
        ("resume", "--all", "--state", "polling"),
        ("resume", "--all", "--state", "sleeping"),
        ("resume", "some-id", "--all", "--state", "auth_paused"),
        ("resume", "some-id", "--api", "demo"),
        ("resume", "--all", "--state", "auth_paused", "--id-prefix", "x'y"),
    ]
    for args in cases:
        done = await cli.starter(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, args
        assert len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
        assert done.stderr.startswith(f"starter.py {args[0]}: error: "), (args, done.stderr)
    unknown = await cli.starter("list", "--state", "sleeping")
    assert "auth_paused" in unknown.stderr  # the valid states are named
