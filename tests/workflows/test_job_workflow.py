"""LongRunningJob on the time-skipping server against the real demo service.

This module holds the job's life cycle: success, status, ending by the job itself,
timeouts, cancellation, input handling and submit idempotency. Outcome handling (rate limits, HTTP errors,
transient failures) is in ``test_job_workflow_outcomes.py``; credentials and ``resume`` in
``test_job_workflow_auth.py``; shared helpers in ``_support.py``.

Timers are read from the workflow history (the time-skipping server makes them free); while a test polls the
``status`` query instead of waiting on a result, the workflow clock runs at real speed.
"""

from __future__ import annotations

import httpx
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment

from demo_service import DemoService
from tests.conftest import DEMO_TOKEN, demo_request, start_worker, unique_id
from tests.workflows._support import (
    failure_of,
    inject,
    only_job,
    result_of,
    start,
    status_of,
    timers,
    track,
    wait_for_status,
    wait_until,
)
from workflows import JobResult, JobState, LongRunningJob

# -- success and the status query -----------------------------------------------------------------------------


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


async def test_status_query_after_success(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 3}, poll_interval_seconds=300)
        result = await result_of(handle)
        status = await status_of(handle)
        durations = await timers(handle)
    job_id, job = only_job(demo)
    assert result.job_id == job_id
    assert result.total_error_count == 0
    assert status.state is JobState.SUCCEEDED
    assert status.job_id == job_id
    assert status.api == "demo"
    assert status.poll_count == 3 == demo.state.poll_requests == job.polls
    assert status.progress == 100
    assert status.status_word == "succeeded"
    assert status.submit_attempts == 1
    assert status.total_error_count == status.consecutive_error_count == 0
    assert status.last_error is None
    assert status.next_poll_time is None
    assert status.resume_note is None
    assert durations == [300, 300, 300]


# -- the job ends on its own: failed or cancelled outside the workflow -----------------------------------------


async def test_job_reported_failed_fails_the_workflow_with_the_api_message(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 2, "fail": "disk full on node 7"})
        error = await failure_of(handle)
        status = await status_of(handle)
    job_id, _ = only_job(demo)
    assert error.type == "JobFailed"
    assert job_id in error.message and "disk full on node 7" in error.message
    assert status.state is JobState.FAILED
    assert status.poll_count == 2
    # The job ended by itself: nothing to cancel.
    assert demo.state.cancel_requests == 0


async def test_job_cancelled_outside_the_workflow_ends_it_cancelled(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        # A long poll interval: no time skips while nobody waits on the result, so the job sits in its first wait.
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1000}, poll_interval_seconds=300)
        await wait_until(lambda: demo.state.jobs_created == 1, "the job was submitted")
        job_id, _ = only_job(demo)
        response = await http.post(
            f"{demo.url}/jobs/{job_id}/cancel", headers={"Authorization": f"Bearer {DEMO_TOKEN}"}
        )
        assert response.status_code == 200, response.text
        error = await failure_of(handle)
        status = await status_of(handle)
    assert error.type == "JobCancelled"
    assert job_id in error.message and "cancelled outside this workflow" in error.message
    assert status.state is JobState.CANCELLED
    assert status.poll_count == 1
    # Only the cancel this test sent: the workflow does not cancel a job that already ended.
    assert demo.state.cancel_requests == 1


# -- timeouts --------------------------------------------------------------------------------------------------


async def test_job_timeout_times_out_and_cancels_the_external_job(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(
            time_env.client, demo, task_queue, input={"work_polls": 1000}, poll_interval_seconds=60, job_timeout="10m"
        )
        error = await failure_of(handle)
        status = await status_of(handle)
        durations = await timers(handle)
    _, job = only_job(demo)
    assert error.type == "PollTimeout"
    assert "0:10:00" in error.message
    assert status.state is JobState.TIMED_OUT
    assert job.observe()[0] == "cancelled"
    assert demo.state.cancel_requests == 1
    # 60-second waits until the deadline; the last one is cut to end at the deadline (the submit took a little
    # real time): ten waits, nine polls in between.
    assert durations[:9] == [60] * 9
    assert 0 < durations[9] <= 60
    assert sum(durations) <= 600
    assert status.poll_count == demo.state.poll_requests == 9


async def test_max_polls_times_out_after_exactly_that_many_polls(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1000}, max_polls=3)
        error = await failure_of(handle)
        status = await status_of(handle)
    _, job = only_job(demo)
    assert error.type == "PollTimeout"
    assert "3 polls" in error.message
    assert status.state is JobState.TIMED_OUT
    assert status.poll_count == demo.state.poll_requests == job.polls == 3
    assert job.observe()[0] == "cancelled"
    assert demo.state.cancel_requests == 1


async def test_max_polls_times_out_right_after_the_last_poll(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1000}, max_polls=3,
                             poll_interval_seconds=3600)
        error = await failure_of(handle)
        durations = await timers(handle)
    assert error.type == "PollTimeout"
    assert demo.state.poll_requests == 3
    # Three waits, three polls; a fourth hour of waiting can only end in the timeout that is already certain.
    assert durations == [3600] * 3


async def test_a_failing_cancel_call_is_tried_once_and_the_job_still_times_out(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    await inject(http, demo, match="cancel", status=500, times=10)
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1000}, max_polls=2)
        error = await failure_of(handle)
        status = await status_of(handle)
    assert error.type == "PollTimeout"
    assert status.state is JobState.TIMED_OUT
    assert demo.state.cancel_requests == 1  # best effort: one call, its failure is not fatal
    _, job = only_job(demo)
    assert job.observe()[0] == "running"


# -- cancelling the workflow -----------------------------------------------------------------------------------


async def test_cancelling_the_workflow_cancels_the_external_job(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1000}, poll_interval_seconds=300)
        await wait_for_status(handle, lambda s: s.state is JobState.POLLING and s.job_id is not None, "polling")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as caught:
            await result_of(handle)
        status = await status_of(handle)
    assert isinstance(caught.value.cause, CancelledError), repr(caught.value.cause)
    _, job = only_job(demo)
    assert job.observe()[0] == "cancelled"
    assert demo.state.cancel_requests == 1
    assert status.state is JobState.CANCELLED


async def test_cancelling_the_workflow_during_a_poll_in_flight(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    # The first poll hangs on the server (well within the spec's 30 s read timeout) while the workflow is cancelled.
    await inject(http, demo, match="poll", status=200, delay_seconds=20)
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1000}, poll_interval_seconds=0.1)
        await wait_until(lambda: demo.state.poll_requests == 1, "the first poll reached the service")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as caught:
            await result_of(handle)
        status = await status_of(handle)
    assert isinstance(caught.value.cause, CancelledError), repr(caught.value.cause)
    assert status.state is JobState.CANCELLED
    _, job = only_job(demo)
    assert job.observe()[0] == "cancelled"
    assert demo.state.cancel_requests == 1
    assert demo.state.poll_requests == 1


# -- input -----------------------------------------------------------------------------------------------------


async def test_invalid_options_fail_the_workflow_instead_of_hanging(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = track(await time_env.client.start_workflow(
            "LongRunningJob",
            {"api": "demo", "variables": {"base_url": demo.url}, "poll_interval_seconds": -1},
            id=unique_id(),
            task_queue=task_queue,
        ))
        # An input that failed only the workflow task would be retried for ever: failure_of bounds that.
        error = await failure_of(handle)
    assert error.type == "ValidationError"
    assert "poll_interval_seconds" in error.message
    assert demo.state.submit_requests == 0


async def test_started_without_a_spec_resolves_it_on_the_worker(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = track(await time_env.client.start_workflow(
            "LongRunningJob",
            {"api": "demo", "variables": {"base_url": demo.url}, "input": {"work_polls": 1},
             "publish_job_state": False},
            id=unique_id(),
            task_queue=task_queue,
            result_type=JobResult,
        ))
        result = await result_of(handle)
    assert result.state is JobState.SUCCEEDED
    assert result.poll_count == 1
    assert demo.state.jobs_created == 1


async def test_unknown_api_fails_with_invalid_spec(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = track(await time_env.client.start_workflow(
            "LongRunningJob",
            {"api": "no-such-api", "input": {"work_polls": 1}, "publish_job_state": False},
            id=unique_id(),
            task_queue=task_queue,
        ))
        error = await failure_of(handle)
        status = await status_of(handle)
    assert error.type == "InvalidSpec"
    assert "no-such-api" in error.message
    assert status.state is JobState.FAILED
    assert demo.state.submit_requests == 0


# -- submit idempotency ----------------------------------------------------------------------------------------


async def test_retried_submit_creates_one_job_with_a_stable_idempotency_key(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    await inject(http, demo, match="submit", status=500)
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1})
        result = await result_of(handle)
        status = await status_of(handle)
    assert result.state is JobState.SUCCEEDED
    assert result.total_error_count == 1
    assert status.submit_attempts == 2 == demo.state.submit_requests
    assert demo.state.jobs_created == 1
    _, job = only_job(demo)
    assert job.idempotency_key.startswith("longjobs:")
    assert handle.id in job.idempotency_key
    assert job.idempotency_key == f"longjobs:{handle.id}:{handle.first_execution_run_id}"
