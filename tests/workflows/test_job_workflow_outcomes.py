"""LongRunningJob's handling of HTTP outcomes: rate limits, permanent errors, server errors, transient failures.

Faults are queued on the real demo service before the job starts; a faulted request never reaches the job, so a
job with ``work_polls: N`` finishes at its N-th un-faulted poll. Waits are read from the history's timers.
"""

from __future__ import annotations

import email.utils
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from demo_service import DemoService
from jobspec import HttpTimeouts
from tests.conftest import demo_request, start_worker, unique_id
from tests.workflows._support import (
    failure_of,
    inject,
    only_job,
    result_of,
    start,
    status_of,
    timers,
    track,
    wait_for_state,
    wait_for_status,
)
from workflows import JobState, LongRunningJob

POLL = 30  # a poll interval distinct from every backoff in these tests
RUNNING = json.dumps({"status": "running", "progress": 50})  # a successful poll that does not end the job

# -- rate limits (429, 408) ------------------------------------------------------------------------------------


async def test_rate_limited_polls_back_off_exponentially(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    await inject(http, demo, match="poll", status=429, times=2)
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1},
                             poll_interval_seconds=POLL, initial_backoff_seconds=5)
        result = await result_of(handle)
        status = await status_of(handle)
        durations = await timers(handle)
    assert result.state is JobState.SUCCEEDED
    assert durations == [POLL, 5, 10]
    assert result.total_error_count == status.total_error_count == 2
    assert status.consecutive_error_count == 0
    assert status.current_backoff_seconds is None and status.next_backoff_seconds is None
    assert status.last_error is not None and status.last_error.http_status == 429
    assert status.last_error.error_class == "rate_limit" and status.last_error.step == "poll"
    assert demo.state.poll_requests == 3 and demo.state.jobs_created == 1


async def test_backoff_is_capped_and_resets_after_a_success(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    await inject(http, demo, match="poll", status=429, times=6)
    await inject(http, demo, match="poll", status=200, body=RUNNING)  # a success between the two runs of 429s
    await inject(http, demo, match="poll", status=429)
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1},
                             poll_interval_seconds=POLL, initial_backoff_seconds=5, max_backoff_seconds=20)
        result = await result_of(handle)
        durations = await timers(handle)
    assert result.state is JobState.SUCCEEDED
    assert durations == [POLL, 5, 10, 20, 20, 20, 20, POLL, 5]
    assert result.total_error_count == 7
    assert result.poll_count == demo.state.poll_requests == 9


def _http_date_in(seconds: float) -> str:
    return email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        pytest.param(lambda: "45", 45, 45, id="seconds-longer-than-backoff"),
        # The activity compares the date with the real clock (the workflow's is skipped): a range.
        pytest.param(lambda: _http_date_in(120), 100, 130, id="http-date"),
        pytest.param(lambda: "1", 5, 5, id="seconds-shorter-than-backoff"),
        pytest.param(lambda: "soon", 5, 5, id="unparseable"),
    ],
)
async def test_retry_after_is_honoured_when_longer_than_the_backoff(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str], retry_after: object, low: float, high: float,
) -> None:
    assert callable(retry_after)
    await inject(http, demo, match="poll", status=429, retry_after=retry_after())
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1},
                             poll_interval_seconds=POLL, initial_backoff_seconds=5)
        result = await result_of(handle)
        durations = await timers(handle)
    assert result.state is JobState.SUCCEEDED
    assert len(durations) == 2 and durations[0] == POLL
    assert low <= durations[1] <= high


async def test_request_timeout_408_is_treated_like_429(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    await inject(http, demo, match="poll", status=408, times=2)
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1},
                             poll_interval_seconds=POLL, initial_backoff_seconds=5)
        result = await result_of(handle)
        status = await status_of(handle)
        durations = await timers(handle)
    assert result.state is JobState.SUCCEEDED
    assert durations == [POLL, 5, 10]
    assert status.total_error_count == 2 and status.consecutive_error_count == 0
    assert status.last_error is not None
    assert status.last_error.error_class == "rate_limit" and status.last_error.http_status == 408


async def test_rate_limits_do_not_spend_the_error_budget(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    await inject(http, demo, match="poll", status=429, times=4)
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1}, max_consecutive_errors=2)
        result = await result_of(handle)
    assert result.state is JobState.SUCCEEDED
    assert result.total_error_count == 4


async def test_state_is_polling_after_a_rate_limited_submit_succeeds(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    await inject(http, demo, match="submit", status=429)
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        # A tiny backoff (real time passes while the test polls the query), then a long first poll interval.
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1},
                             poll_interval_seconds=300, initial_backoff_seconds=0.1)
        status = await wait_for_status(handle, lambda s: s.job_id is not None, "submitted")
        assert status.current_backoff_seconds is None  # no rate limit is in effect any more
        assert status.state is JobState.POLLING, status.state
        result = await result_of(handle)
    assert result.state is JobState.SUCCEEDED


async def test_status_query_while_rate_limited(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    await inject(http, demo, match="poll", status=429, retry_after="600")
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1}, poll_interval_seconds=0.2)
        waiting = await wait_for_state(handle, JobState.RATE_LIMITED)
        result = await result_of(handle)
        durations = await timers(handle)
    assert waiting.current_backoff_seconds == 600
    assert waiting.next_backoff_seconds == 10  # the exponential backoff runs on underneath a Retry-After
    assert waiting.next_poll_time is not None and waiting.last_error is not None
    assert waiting.next_poll_time - waiting.last_error.at == timedelta(seconds=600)
    assert waiting.consecutive_error_count == 0 and waiting.total_error_count == 1
    assert result.state is JobState.SUCCEEDED
    assert durations == [0.2, 600]


async def test_job_timeout_cuts_a_long_retry_after_short(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    await inject(http, demo, match="poll", status=429, retry_after="86400")
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1}, poll_interval_seconds=POLL,
                             job_timeout="10m")
        error = await failure_of(handle)
        durations = await timers(handle)
    assert error.type == "PollTimeout"
    assert len(durations) == 2 and durations[0] == POLL
    assert 0 < durations[1] <= 600 - POLL
    _, job = only_job(demo)
    assert job.observe()[0] == "cancelled"


# -- permanent errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [400, 404, 410])
async def test_permanent_error_on_poll_fails_the_job(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str], code: int,
) -> None:
    await inject(http, demo, match="poll", status=code, body=json.dumps({"error": "not for you"}))
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1})
        error = await failure_of(handle)
        status = await status_of(handle)
    assert error.type == "PermanentHttpError"
    assert f"poll: HTTP {code}" in error.message and "not for you" in error.message
    assert error.non_retryable
    assert status.state is JobState.FAILED
    assert status.poll_count == demo.state.poll_requests == 1  # never retried
    assert status.last_error is not None and status.last_error.error_class == "permanent"


async def test_permanent_error_on_submit_fails_the_job(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    await inject(http, demo, match="submit", status=400, body=json.dumps({"error": "items must be a list"}))
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1})
        error = await failure_of(handle)
        status = await status_of(handle)
    assert error.type == "PermanentHttpError"
    assert "submit: HTTP 400" in error.message and "items must be a list" in error.message
    assert status.state is JobState.FAILED and status.job_id is None
    assert demo.state.submit_requests == 1 and demo.state.jobs_created == 0
    assert demo.state.poll_requests == 0


# -- server errors and the consecutive error limit -------------------------------------------------------------


async def test_server_errors_are_retried_at_the_poll_interval(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    await inject(http, demo, match="poll", status=503, times=3)
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1}, poll_interval_seconds=POLL)
        result = await result_of(handle)
        status = await status_of(handle)
        durations = await timers(handle)
    assert result.state is JobState.SUCCEEDED
    assert result.total_error_count == 3
    assert status.consecutive_error_count == 0
    assert status.last_error is not None
    assert status.last_error.error_class == "server_error" and status.last_error.http_status == 503
    assert durations == [POLL] * 4
    assert demo.state.jobs_created == 1


async def test_consecutive_server_errors_fail_the_job_with_the_last_error(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    await inject(http, demo, match="poll", status=500, times=4)
    await inject(http, demo, match="poll", status=502, body=json.dumps({"error": "upstream on fire"}))
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1}, max_consecutive_errors=5)
        error = await failure_of(handle)
        status = await status_of(handle)
    assert error.type == "ErrorLimitExceeded"
    assert "5 consecutive errors" in error.message
    assert "poll: HTTP 502" in error.message and "upstream on fire" in error.message
    assert status.state is JobState.FAILED
    assert status.consecutive_error_count == status.total_error_count == 5
    assert demo.state.poll_requests == 5


async def test_errors_separated_by_a_success_do_not_add_up(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    await inject(http, demo, match="poll", status=500, times=4)
    await inject(http, demo, match="poll", status=200, body=RUNNING)
    await inject(http, demo, match="poll", status=500, times=4)
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1}, max_consecutive_errors=5)
        result = await result_of(handle)
        status = await status_of(handle)
    assert result.state is JobState.SUCCEEDED
    assert result.total_error_count == 8
    assert status.consecutive_error_count == 0
    assert demo.state.poll_requests == 10


# -- transient failures: no usable answer ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "timeouts", "words"),
    [
        pytest.param({"status": 200, "body": "<html>gateway</html>"}, {}, "malformed", id="malformed-json"),
        pytest.param({"status": 200, "body": json.dumps({"state": "running"})}, {}, "malformed", id="no-status"),
        pytest.param({"reset": True}, {}, "connection", id="connection-reset"),
        pytest.param({"status": 200, "delay_seconds": 2}, {"read_seconds": 0.5}, "timed out", id="read-timeout"),
        # Each chunk arrives within the read timeout, the whole body does not arrive within twice that.
        pytest.param({"status": 200, "body": json.dumps({"status": "running", "pad": "x" * 100}), "trickle_seconds": 3},
                     {"read_seconds": 0.5}, "too long", id="trickle"),
        pytest.param({"status": 200, "body": json.dumps({"status": "running", "pad": "x" * 2000})},
                     {"max_response_bytes": 1000}, "too large", id="oversized-body"),
    ],
)
async def test_transient_failures_are_retried(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str], fault: dict[str, object], timeouts: dict[str, float], words: str,
) -> None:
    await inject(http, demo, match="poll", **fault)
    request = demo_request(demo, input={"work_polls": 1}, poll_interval_seconds=POLL)
    if timeouts:
        assert request.spec is not None
        spec = request.spec.model_copy(update={"timeouts": HttpTimeouts(**timeouts)})
        request = request.model_copy(update={"spec": spec})
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = track(
            await time_env.client.start_workflow(LongRunningJob.run, request, id=unique_id(), task_queue=task_queue)
        )
        result = await result_of(handle)
        status = await status_of(handle)
        durations = await timers(handle)
    assert result.state is JobState.SUCCEEDED
    assert result.total_error_count == 1
    assert status.consecutive_error_count == 0
    assert status.last_error is not None
    assert status.last_error.error_class == "transient" and status.last_error.step == "poll"
    assert words in status.last_error.message
    assert durations == [POLL, POLL]
    assert demo.state.poll_requests == 2
    _, job = only_job(demo)
    assert job.polls == 1


async def test_unknown_status_word_keeps_polling_with_a_warning(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    await inject(http, demo, match="poll", status=200, body=json.dumps({"status": "defrosting", "progress": 40}))
    async with start_worker(time_env.client, http, task_queue, worker_environ):
        handle = await start(time_env.client, demo, task_queue, input={"work_polls": 1}, poll_interval_seconds=POLL)
        result = await result_of(handle)
        status = await status_of(handle)
    assert result.state is JobState.SUCCEEDED
    assert result.total_error_count == 0
    assert status.warning is not None and "defrosting" in status.warning
    assert demo.state.poll_requests == 2
