"""A job of 20,000 polls on the time-skipping server: every run stays under the history warning.

The server suggests continue-as-new at about 4,100 events, and a one-minute poll interval costs no real time
there, so the job (about 30 runs) only takes as long as its workflow tasks (about 3 minutes on 2 cores). Its
own file, so that pytest-xdist runs it beside the rest of the suite.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from demo_service import DemoService
from tests.conftest import demo_request, start_worker, unique_id
from tests.durability._runs import HISTORY_WARNING, runs_of, terminated_unless_done
from workflows import JobResult, JobState, LongRunningJob

LONG_JOB_POLLS = 20_000
# A bound on the job (about 3 minutes, sharing 2 cores with the rest of the suite): a hang fails the test
# instead of stalling it.
LONG_JOB_GUARD_SECONDS = 600


@pytest.mark.timeout(LONG_JOB_GUARD_SECONDS + 60)
async def test_twenty_thousand_polls_every_run_under_the_history_warning(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    client = time_env.client
    # 20,000 polls a minute apart: about 14 days of (skipped) job time.
    request = demo_request(demo, input={"work_polls": LONG_JOB_POLLS}, poll_interval_seconds=60, job_timeout="30d")
    async with start_worker(client, http, task_queue, worker_environ):
        handle = await client.start_workflow(
            LongRunningJob.run, request, id=unique_id("can-20k"), task_queue=task_queue
        )
        async with terminated_unless_done(handle):
            result: JobResult = await asyncio.wait_for(handle.result(), LONG_JOB_GUARD_SECONDS)

    assert result.state is JobState.SUCCEEDED
    assert result.poll_count >= LONG_JOB_POLLS  # the counter went on across every hand-over
    runs = await runs_of(client, handle.id, handle.first_execution_run_id)
    lengths = [len(run.events) for run in runs]
    assert len(runs) > 1 and result.runs == len(runs), lengths
    assert max(lengths) < HISTORY_WARNING, lengths
    assert all(run.continued_as_new for run in runs[:-1]), "a run other than the last ended otherwise"

    # One external job, the same job id in every run, and counters that only grow from run to run.
    [(job_id, job)] = demo.state.jobs.items()
    assert demo.state.jobs_created == 1 and result.job_id == job_id
    assert job.polls == LONG_JOB_POLLS and demo.state.submit_requests == 1
    carried = [run.request.carried_status for run in runs[1:]]
    assert all(status is not None and status.job_id == job_id for status in carried)
    assert [status.runs for status in carried if status] == list(range(1, len(runs)))
    polls = [status.poll_count for status in carried if status]
    assert polls == sorted(set(polls)) and polls[-1] < LONG_JOB_POLLS, polls
    assert all(run.request.spec == request.spec for run in runs)
