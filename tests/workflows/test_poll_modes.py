"""The activity poll mode: one heartbeating activity polls until something happens, the workflow decides.

The activity sleeps in real time (time skipping does not reach into activities), so intervals here are short.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities import JobApiActivities, OutcomeClass, WatchJobInput
from demo_service import DemoService
from jobspec import JobPhase
from tests.conftest import demo_spec, start_worker
from tests.workflows._support import failure_of, inject, only_job, result_of, start, status_of, timers, wait_for_status
from workflows import JobState

QUICK = 0.05


async def _event_types(handle: object) -> list[int]:
    return [event.event_type async for event in handle.fetch_history_events()]  # type: ignore[attr-defined]


async def test_uneventful_polls_cost_no_history(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    async def run(polls: int) -> int:
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": polls},
                             poll_interval_seconds=QUICK, poll_mode="activity")
        result = await result_of(handle)
        assert result.state is JobState.SUCCEEDED
        assert result.poll_count == polls
        assert await timers(handle) == []  # every wait happened inside the activity
        return len(await _event_types(handle))

    async with start_worker(time_env.client, http, task_queue, worker_environ):
        short, long = await run(20), await run(60)
    # The demo reports progress; the activity returns at each 10% step, so events grow with progress steps,
    # not with polls: 40 more polls cost no more history than the same ten steps did.
    assert long == short


async def test_rate_limit_returns_to_the_workflow_which_backs_off(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    await inject(http, demo, match="poll", status=429, times=2, retry_after="30")
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 3},
                             poll_interval_seconds=QUICK, poll_mode="activity")
        result = await result_of(handle)
    assert result.total_error_count == 2
    assert await timers(handle) == [30.0, 30.0]  # the backoff is the workflow's, with the server's Retry-After
    assert demo.state.jobs_created == 1


async def test_auth_pause_and_resume_in_activity_mode(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str], token_file: object,
) -> None:
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 4},
                             poll_interval_seconds=QUICK, poll_mode="activity")
        await wait_for_status(handle, lambda s: s.job_id is not None, "submitted")
        demo.state.token = "rotated"
        await wait_for_status(handle, lambda s: s.state is JobState.AUTH_PAUSED, "paused")
        demo.state.token = "rotated"
        token_file.write_text("rotated")  # type: ignore[attr-defined]
        await handle.signal("resume")
        result = await result_of(handle)
    assert result.state is JobState.SUCCEEDED
    assert demo.state.jobs_created == 1


async def test_max_polls_is_a_budget_across_activity_calls(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1000},
                             poll_interval_seconds=QUICK, poll_mode="activity", max_polls=7)
        error = await failure_of(handle)
        status = await status_of(handle)
    assert error.type == "PollTimeout"
    assert status.poll_count == 7
    _, job = only_job(demo)
    assert job.polls == 7 and job.observe()[0] == "cancelled"


async def test_cancelling_the_workflow_reaches_the_polling_activity(
    dev_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    # On the dev server: the time-skipping test server does not complete a cancelled run while one of its
    # heartbeating activities still runs in real time.
    async with start_worker(dev_env.client, http, task_queue, worker_environ):
        handle = await start(dev_env.client, demo, task_queue, input={"work_polls": 100000},
                             poll_interval_seconds=QUICK, poll_mode="activity")
        await wait_for_status(handle, lambda s: s.job_id is not None, "submitted")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as caught:
            await result_of(handle)
    assert isinstance(caught.value.cause, CancelledError)
    _, job = only_job(demo)
    assert job.observe()[0] == "cancelled"


async def test_heartbeat_details_carry_the_poll_count_across_a_retry(demo: DemoService) -> None:
    # A retried attempt (the worker died) starts from the count its last heartbeat recorded.
    async with httpx.AsyncClient() as http:
        submitted = await http.post(f"{demo.url}/jobs", json={"work_polls": 3},
                                    headers={"Authorization": f"Bearer {demo.state.token}"})
        job_id = submitted.json()["id"]
        acts = JobApiActivities(http, environ={"DEMO_API_TOKEN": demo.state.token})
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, heartbeat_details=[5])
        watch = WatchJobInput(spec=demo_spec(demo), job_id=job_id, poll_interval_seconds=QUICK, first_wait_seconds=0,
                              last_phase=JobPhase.RUNNING, deadline=datetime.now(UTC) + timedelta(minutes=1))
        outcome = await env.run(acts.watch_job, watch)
    # The first poll crossed a progress step, so it came back at once: one poll on top of the five recorded.
    assert outcome.outcome is OutcomeClass.OK and outcome.progress is not None
    assert outcome.polls == 5 + 1


async def test_a_worker_with_default_options_follows_more_jobs_at_once_than_the_sdk_default_slots(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    """Every job being followed holds an activity: 150 running jobs are all polled, none waits for a slot.

    (The SDK's default of 100 activity slots would leave 50 jobs unpolled until others changed or ended.)
    """
    jobs = 150
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        for _ in range(jobs):
            await start(time_env.client, demo, task_queue, input={"work_polls": 100_000},
                        poll_interval_seconds=1.0, poll_mode="activity")
        for _ in range(600):
            polled = [job for job in demo.state.jobs.values() if job.polls >= 2]
            if len(polled) == jobs:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail(f"only {len(polled)} of {jobs} running jobs were polled twice")
    assert demo.state.jobs_created == jobs
