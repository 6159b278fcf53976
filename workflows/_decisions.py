"""What the workflow does about each classified outcome: one deterministic function, testable without Temporal.

``apply_outcome`` updates the counters on the job's status and returns the next action. The workflow class
only performs actions (sleep, pause, fail), so the whole policy of the README's outcome table is here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from activities import HttpOutcome, OutcomeClass
from workflows._models import ErrorInfo, JobOptions, JobState, JobStatus


@dataclass(frozen=True)
class Proceed:
    """The call succeeded: use what it returned."""


@dataclass(frozen=True)
class RetryLater:
    """Wait ``seconds`` (in ``state``), then make the same call again."""

    seconds: float
    state: JobState


@dataclass(frozen=True)
class PauseForAuth:
    """Wait for a person to fix the credential and send ``resume``, then make the same call again."""


@dataclass(frozen=True)
class Fail:
    """End the job: ``error_type`` becomes the ApplicationError type that ``temporal workflow describe`` shows."""

    error_type: str
    message: str


Decision = Proceed | RetryLater | PauseForAuth | Fail


def apply_outcome(
    status: JobStatus, outcome: HttpOutcome, options: JobOptions, *, step: str, now: datetime
) -> Decision:
    """Count the outcome on ``status`` and decide what happens next (README, "How outcomes are handled")."""
    if outcome.outcome is OutcomeClass.OK:
        status.consecutive_error_count = 0
        status.current_backoff_seconds = None
        status.next_backoff_seconds = None  # backoff resets after a success
        return Proceed()

    status.total_error_count += 1
    status.last_error = ErrorInfo(
        error_class=outcome.outcome.value,
        http_status=outcome.http_status,
        message=outcome.message,
        step=step,
        at=now,
    )
    where = f"{step}: HTTP {outcome.http_status}" if outcome.http_status else step
    match outcome.outcome:
        case OutcomeClass.RATE_LIMIT:
            # Server-directed waits do not spend the error budget; the job timeout bounds them.
            # Exponential backoff: initial, doubling, capped; a longer Retry-After wins.
            backoff = status.next_backoff_seconds or min(options.initial_backoff_seconds, options.max_backoff_seconds)
            status.next_backoff_seconds = min(backoff * 2, options.max_backoff_seconds)
            wait = max(backoff, outcome.retry_after_seconds or 0.0)
            status.current_backoff_seconds = wait
            return RetryLater(seconds=wait, state=JobState.RATE_LIMITED)
        case OutcomeClass.AUTH_REQUIRED:
            return PauseForAuth()
        case OutcomeClass.PERMANENT:
            return Fail("PermanentHttpError", f"{where}: {outcome.message}")
        case _:  # server_error, transient
            status.consecutive_error_count += 1
            if status.consecutive_error_count >= options.max_consecutive_errors:
                return Fail(
                    "ErrorLimitExceeded",
                    f"{status.consecutive_error_count} consecutive errors; last: {where}: {outcome.message}",
                )
            state = JobState.SUBMITTING if status.job_id is None else JobState.POLLING
            return RetryLater(seconds=options.poll_interval_seconds, state=state)
