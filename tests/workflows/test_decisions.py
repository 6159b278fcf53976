"""apply_outcome: the whole outcome policy as a pure function (no Temporal)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from activities import HttpOutcome, OutcomeClass
from workflows._decisions import Fail, PauseForAuth, Proceed, RetryLater, apply_outcome
from workflows._models import ErrorInfo, JobOptions, JobState, JobStatus

NOW = datetime(2025, 6, 1, 8, 30, tzinfo=UTC)
DEFAULTS = JobOptions()

OK = HttpOutcome(outcome=OutcomeClass.OK, http_status=200)
RATE_LIMITED = HttpOutcome(outcome=OutcomeClass.RATE_LIMIT, http_status=429, message="slow down")
SERVER_ERROR = HttpOutcome(outcome=OutcomeClass.SERVER_ERROR, http_status=503, message="upstream sad")
TRANSIENT = HttpOutcome(outcome=OutcomeClass.TRANSIENT, message="cannot connect")
AUTH = HttpOutcome(outcome=OutcomeClass.AUTH_REQUIRED, http_status=401, message="invalid token")
PERMANENT = HttpOutcome(outcome=OutcomeClass.PERMANENT, http_status=422, message="items must be a list")


def rate_limited(retry_after: float | None) -> HttpOutcome:
    return RATE_LIMITED.model_copy(update={"retry_after_seconds": retry_after})


def apply(
    status: JobStatus, outcome: HttpOutcome, options: JobOptions = DEFAULTS, step: str = "poll"
) -> Proceed | RetryLater | PauseForAuth | Fail:
    return apply_outcome(status, outcome, options, step=step, now=NOW)


def polling_status() -> JobStatus:
    return JobStatus(state=JobState.POLLING, job_id="job_1")


# -- ok ------------------------------------------------------------------------------------------------------


def test_ok_proceeds_and_resets_errors_and_backoff() -> None:
    status = polling_status()
    status.consecutive_error_count = 3
    status.total_error_count = 7
    status.current_backoff_seconds = 40.0
    status.next_backoff_seconds = 80.0
    last = ErrorInfo(error_class="server_error", http_status=500, message="x", step="poll", at=NOW)
    status.last_error = last

    assert apply(status, OK) == Proceed()
    assert status.consecutive_error_count == 0
    assert status.current_backoff_seconds is None
    assert status.next_backoff_seconds is None
    assert status.total_error_count == 7  # history is kept
    assert status.last_error == last


# -- rate limits ---------------------------------------------------------------------------------------------


def test_rate_limit_backoff_doubles_to_the_cap_and_resets_after_ok() -> None:
    status = polling_status()
    waits = []
    for _ in range(8):
        decision = apply(status, rate_limited(None))
        assert isinstance(decision, RetryLater)
        assert decision.state is JobState.RATE_LIMITED
        assert status.current_backoff_seconds == decision.seconds
        waits.append(decision.seconds)
    assert waits == [5, 10, 20, 40, 80, 160, 300, 300]

    apply(status, OK)
    assert apply(status, rate_limited(None)) == RetryLater(seconds=5, state=JobState.RATE_LIMITED)


def test_rate_limit_backoff_follows_the_options() -> None:
    status = polling_status()
    options = JobOptions(initial_backoff_seconds=1, max_backoff_seconds=6)
    decisions = [apply(status, rate_limited(None), options) for _ in range(5)]
    assert decisions == [RetryLater(seconds, JobState.RATE_LIMITED) for seconds in (1, 2, 4, 6, 6)]


def test_initial_backoff_above_the_cap_is_capped() -> None:
    options = JobOptions(initial_backoff_seconds=500, max_backoff_seconds=60)
    assert apply(polling_status(), rate_limited(None), options) == RetryLater(60, JobState.RATE_LIMITED)


@pytest.mark.parametrize(
    ("retry_after", "expected_wait"),
    [
        (120.0, 120.0),  # longer than the 5 s backoff: the server wins
        (2.0, 5.0),  # shorter: the backoff still applies
        (0.0, 5.0),
        (None, 5.0),
        (3600.0, 3600.0),  # not capped by max_backoff: the server asked, the job timeout bounds it
    ],
)
def test_retry_after_longer_than_backoff_wins(retry_after: float | None, expected_wait: float) -> None:
    status = polling_status()
    assert apply(status, rate_limited(retry_after)) == RetryLater(expected_wait, JobState.RATE_LIMITED)
    assert status.current_backoff_seconds == expected_wait


def test_retry_after_does_not_disturb_the_backoff_sequence() -> None:
    status = polling_status()
    apply(status, rate_limited(120))
    assert apply(status, rate_limited(None)) == RetryLater(10, JobState.RATE_LIMITED)


def test_rate_limits_spend_no_error_budget_but_count_in_total() -> None:
    status = polling_status()
    status.consecutive_error_count = 2
    for _ in range(10):  # far beyond max_consecutive_errors
        assert isinstance(apply(status, rate_limited(None)), RetryLater)
    assert status.consecutive_error_count == 2
    assert status.total_error_count == 10
    assert status.last_error is not None and status.last_error.error_class == "rate_limit"


def test_rate_limit_while_submitting_also_waits_rate_limited() -> None:
    decision = apply(JobStatus(), rate_limited(None), step="submit")
    assert decision == RetryLater(5, JobState.RATE_LIMITED)


# -- auth and permanent --------------------------------------------------------------------------------------


def test_auth_required_pauses() -> None:
    status = polling_status()
    status.consecutive_error_count = 4
    assert apply(status, AUTH) == PauseForAuth()
    assert status.total_error_count == 1
    assert status.consecutive_error_count == 4  # a person fixes auth; it is not a retryable error
    assert status.last_error is not None and status.last_error.error_class == "auth_required"


def test_permanent_fails_with_status_and_message() -> None:
    status = polling_status()
    decision = apply(status, PERMANENT, step="submit")
    assert decision == Fail("PermanentHttpError", "submit: HTTP 422: items must be a list")
    assert status.total_error_count == 1


def test_permanent_without_http_status_names_only_the_step() -> None:
    outcome = HttpOutcome(outcome=OutcomeClass.PERMANENT, message="nope")
    assert apply(polling_status(), outcome, step="fetch_result") == Fail("PermanentHttpError", "fetch_result: nope")


# -- server errors and transient failures --------------------------------------------------------------------


@pytest.mark.parametrize("outcome", [SERVER_ERROR, TRANSIENT])
@pytest.mark.parametrize(("job_id", "state"), [(None, JobState.SUBMITTING), ("job_1", JobState.POLLING)])
def test_retryable_errors_wait_the_poll_interval(outcome: HttpOutcome, job_id: str | None, state: JobState) -> None:
    status = JobStatus(job_id=job_id)
    options = JobOptions(poll_interval_seconds=7.5)
    assert apply(status, outcome, options) == RetryLater(7.5, state)
    assert status.consecutive_error_count == 1
    assert status.total_error_count == 1
    assert status.current_backoff_seconds is None  # a server error is not a rate limit


@pytest.mark.parametrize("outcome", [SERVER_ERROR, TRANSIENT])
def test_fifth_consecutive_error_fails(outcome: HttpOutcome) -> None:
    status = polling_status()
    for count in range(1, 5):
        assert isinstance(apply(status, outcome), RetryLater)
        assert status.consecutive_error_count == count
    decision = apply(status, outcome)
    assert isinstance(decision, Fail)
    assert decision.error_type == "ErrorLimitExceeded"
    assert decision.message.startswith("5 consecutive errors; last: poll")
    assert decision.message.endswith(outcome.message)
    assert status.total_error_count == 5


def test_error_limit_message_carries_the_last_error() -> None:
    status = polling_status()
    for _ in range(4):
        apply(status, TRANSIENT)
    decision = apply(status, SERVER_ERROR)
    assert decision == Fail("ErrorLimitExceeded", "5 consecutive errors; last: poll: HTTP 503: upstream sad")


def test_error_limit_follows_the_options() -> None:
    options = JobOptions(max_consecutive_errors=1)
    assert isinstance(apply(polling_status(), SERVER_ERROR, options), Fail)


def test_ok_in_between_restarts_the_error_count() -> None:
    status = polling_status()
    for _ in range(4):
        apply(status, SERVER_ERROR)
    apply(status, OK)
    for _ in range(4):
        assert isinstance(apply(status, SERVER_ERROR), RetryLater)
    assert status.total_error_count == 8


def test_rate_limit_in_between_does_not_restart_the_error_count() -> None:
    status = polling_status()
    for _ in range(4):
        apply(status, SERVER_ERROR)
    apply(status, rate_limited(None))
    assert isinstance(apply(status, SERVER_ERROR), Fail)


# -- last_error ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "error_class"),
    [
        (RATE_LIMITED, "rate_limit"),
        (SERVER_ERROR, "server_error"),
        (TRANSIENT, "transient"),
        (AUTH, "auth_required"),
        (PERMANENT, "permanent"),
    ],
)
def test_last_error_is_recorded(outcome: HttpOutcome, error_class: str) -> None:
    status = polling_status()
    apply(status, outcome, step="poll")
    assert status.last_error == ErrorInfo(
        error_class=error_class, http_status=outcome.http_status, message=outcome.message, step="poll", at=NOW
    )


def test_last_error_is_the_latest() -> None:
    status = JobStatus()
    apply(status, SERVER_ERROR, step="submit")
    apply(status, TRANSIENT, step="cancel")
    assert status.last_error is not None
    assert (status.last_error.step, status.last_error.error_class, status.last_error.http_status) == (
        "cancel",
        "transient",
        None,
    )
