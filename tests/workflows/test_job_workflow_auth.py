"""LongRunningJob's auth pause: 401/402/403 or a missing credential pause the job until ``resume``.

While a test polls the status query the workflow clock runs at real speed, so every pause here happens at once
(a fault queued or a token rotated before the start, a short poll interval); ``time_env.sleep`` then skips an
hour of paused time for free.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment

from demo_service import DemoService
from tests.conftest import DEMO_TOKEN, start_worker
from tests.workflows._support import (
    clear_faults,
    failure_of,
    inject,
    only_job,
    result_of,
    start,
    status_of,
    timers,
    wait_for_state,
    wait_for_status,
)
from workflows import JobState, LongRunningJob

QUICK = 0.2  # poll interval (seconds) for tests that watch a pause happen in real time
ROTATED = "rotated-token-4d1e"


@pytest.mark.parametrize("code", [401, 402, 403])
async def test_auth_error_on_poll_pauses_until_resume(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str], code: int,
) -> None:
    # Every poll is refused until the test "fixes the credential" by clearing the fault.
    await inject(http, demo, match="poll", status=code, times=100, body=json.dumps({"error": "token expired"}))
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1}, poll_interval_seconds=QUICK)
        paused = await wait_for_state(handle, JobState.AUTH_PAUSED)
        assert paused.job_id is not None
        assert paused.last_error is not None
        assert paused.last_error.error_class == "auth_required" and paused.last_error.http_status == code
        assert paused.last_error.step == "poll" and "token expired" in paused.last_error.message
        assert paused.paused_since is not None and paused.next_poll_time is None
        polls = demo.state.poll_requests
        assert polls == 1

        # Paused means no calls: neither while real time passes nor across an hour of skipped workflow time.
        await asyncio.sleep(0.5)
        assert demo.state.poll_requests == polls
        await time_env.sleep(3600)
        assert demo.state.poll_requests == polls
        assert (await status_of(handle)).state is JobState.AUTH_PAUSED

        await clear_faults(http, demo)
        await handle.signal(LongRunningJob.resume, {"note": "fixed"})
        result = await result_of(handle)
        status = await status_of(handle)
    assert result.state is JobState.SUCCEEDED
    assert result.job_id == paused.job_id
    assert demo.state.jobs_created == 1 and demo.state.submit_requests == 1
    assert demo.state.poll_requests == polls + 1  # the refused poll, retried once after resume
    assert status.resume_note == "fixed"
    assert status.paused_since is None
    assert status.total_error_count == 1
    # The paused hour does not count against the job timeout.
    assert paused.deadline is not None and status.deadline is not None
    assert status.deadline - paused.deadline >= timedelta(hours=1)


async def test_rotated_token_on_submit_pauses_and_submits_once_after_resume(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str], token_file: Path,
) -> None:
    demo.state.token = ROTATED
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1})
        paused = await wait_for_state(handle, JobState.AUTH_PAUSED)
        assert paused.job_id is None
        assert paused.last_error is not None
        assert paused.last_error.step == "submit" and paused.last_error.http_status == 401
        assert demo.state.submit_requests == 1 and demo.state.jobs_created == 0

        token_file.write_text(ROTATED)  # the credential is re-read on every call: no worker restart
        await handle.signal(LongRunningJob.resume, {"note": "rotated"})
        result = await result_of(handle)
        status = await status_of(handle)
    assert result.state is JobState.SUCCEEDED
    assert demo.state.jobs_created == 1 and demo.state.submit_requests == 2
    assert status.submit_attempts == 2
    job_id, _ = only_job(demo)
    assert result.job_id == job_id
    assert status.resume_note == "rotated"


async def test_missing_credential_pauses_and_names_where_it_was_looked_for(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str, token_file: Path,
) -> None:
    environ: dict[str, str] = {}  # the worker reads credentials from this very dict, on every call
    async with start_worker(time_env.client, http, task_queue, environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1})
        paused = await wait_for_state(handle, JobState.AUTH_PAUSED)
        assert paused.last_error is not None
        assert paused.last_error.error_class == "auth_required"
        assert "DEMO_API_TOKEN_FILE" in paused.last_error.message
        assert demo.state.submit_requests == 0  # nothing was sent without a credential

        environ["DEMO_API_TOKEN_FILE"] = str(token_file)
        await handle.signal(LongRunningJob.resume)
        result = await result_of(handle)
    assert result.state is JobState.SUCCEEDED
    assert demo.state.jobs_created == 1


async def test_auth_pause_timeout_fails_the_job(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    demo.state.token = ROTATED  # never fixed
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1}, auth_pause_timeout="1h")
        error = await failure_of(handle)
        status = await status_of(handle)
        durations = await timers(handle)
    assert error.type == "AuthPauseTimeout"
    assert "1:00:00" in error.message and "submit" in error.message
    assert status.state is JobState.FAILED
    assert durations == [3600]
    assert demo.state.submit_requests == 1 and demo.state.jobs_created == 0


async def test_resume_while_not_paused_is_ignored(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1}, poll_interval_seconds=300)
        await wait_for_status(handle, lambda s: s.state is JobState.POLLING and s.job_id is not None, "polling")
        await handle.signal(LongRunningJob.resume, {"note": "too early"})
        status = await status_of(handle)
        assert status.state is JobState.POLLING and status.resume_note is None
        result = await result_of(handle)
        status = await status_of(handle)
        durations = await timers(handle)
    assert result.state is JobState.SUCCEEDED
    assert status.resume_note is None
    assert durations == [300]  # the signal did not cut the wait short
    assert demo.state.poll_requests == 1


async def test_resume_sent_early_does_not_resume_a_later_pause(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    await inject(http, demo, match="poll", status=401, times=100)
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1}, poll_interval_seconds=300)
        await wait_for_status(handle, lambda s: s.state is JobState.POLLING and s.job_id is not None, "polling")
        await handle.signal(LongRunningJob.resume, {"note": "too early"})
        await time_env.sleep(300)  # the first poll is due: refused
        await wait_for_state(handle, JobState.AUTH_PAUSED)
        await time_env.sleep(3600)
        status = await status_of(handle)
        assert status.state is JobState.AUTH_PAUSED and status.resume_note is None
        assert demo.state.poll_requests == 1

        await clear_faults(http, demo)
        await handle.signal(LongRunningJob.resume, {"note": "now"})
        result = await result_of(handle)
        status = await status_of(handle)
    assert result.state is JobState.SUCCEEDED
    assert status.resume_note == "now"
    assert demo.state.poll_requests == 2


_NO_PAYLOAD = object()


@pytest.mark.parametrize(
    ("payload", "note"),
    [
        pytest.param(_NO_PAYLOAD, None, id="no-payload"),
        pytest.param("rotated the key", "rotated the key", id="plain-string"),
        pytest.param({"note": "rotated the key"}, "rotated the key", id="note-object"),
        pytest.param({"note": ""}, None, id="empty-note"),
        pytest.param({"comment": "rotated"}, None, id="other-keys"),
        pytest.param(42, None, id="number"),
    ],
)
async def test_any_resume_payload_resumes_a_paused_job(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str], payload: Any, note: str | None,
) -> None:
    demo.state.token = ROTATED
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1})
        await wait_for_state(handle, JobState.AUTH_PAUSED)
        demo.state.token = DEMO_TOKEN
        if payload is _NO_PAYLOAD:
            await handle.signal(LongRunningJob.resume)
        else:
            await handle.signal(LongRunningJob.resume, payload)
        result = await result_of(handle)
        status = await status_of(handle)
    assert result.state is JobState.SUCCEEDED
    assert status.resume_note == note
    assert demo.state.jobs_created == 1


async def test_cancelling_a_paused_job_cancels_the_external_job(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    await inject(http, demo, match="poll", status=403, times=100)
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1}, poll_interval_seconds=QUICK)
        await wait_for_state(handle, JobState.AUTH_PAUSED)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as caught:
            await result_of(handle)
        status = await status_of(handle)
    assert isinstance(caught.value.cause, CancelledError), repr(caught.value.cause)
    assert status.state is JobState.CANCELLED
    _, job = only_job(demo)
    assert job.observe()[0] == "cancelled"
    assert demo.state.cancel_requests == 1
