"""LongRunningJob on the time-skipping server against the real demo service."""

from __future__ import annotations

import httpx
from temporalio.testing import WorkflowEnvironment

from demo_service import DemoService
from tests.conftest import demo_request, start_worker, unique_id
from workflows import JobState, LongRunningJob


async def test_job_succeeds_after_polls_with_long_interval(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        result = await time_env.client.execute_workflow(
            LongRunningJob.run,
            demo_request(demo, input={"work_polls": 3}, poll_interval_seconds=300),
            id=unique_id(),
            task_queue=task_queue,
        )
    assert result.state is JobState.SUCCEEDED
    assert result.poll_count == 3
    assert result.result["output"].startswith("processed")
    assert demo.state.jobs_created == 1
