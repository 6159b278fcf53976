"""What ``LongRunningJob`` records on the worker's metrics: called from workflow code only.

Everything goes through ``workflow.metric_meter()``, so it lands on the worker's Prometheus endpoint next to
the SDK's metrics (``worker.py --metrics-port``) with the labels ``namespace``, ``task_queue`` and
``workflow_type``, and nothing is recorded while a workflow replays: each event is counted once, by the
worker that first ran it. (A workflow task that ran but failed to complete, say on a worker killed mid-task,
runs again elsewhere and counts again: these are at-least-once counts.) Without metrics configured the meter
is a no-op, so tests and the time-skipping server need nothing.

Labels stay few and bounded: ``api`` is the API spec's name, ``outcome`` an :class:`OutcomeClass` value,
``state`` a terminal :class:`JobState`.
"""

from __future__ import annotations

from typing import Literal

from temporalio import workflow

from workflows._models import JobState

POLLS = "longjobs_polls_total"
JOBS_TERMINAL = "longjobs_jobs_terminal_total"
AUTH_PAUSES = "longjobs_auth_pauses_total"
AUTH_RESUMES = "longjobs_auth_resumes_total"
AUTH_PAUSE_SECONDS = "longjobs_auth_pause_seconds"  # buckets: longjobs._metrics.AUTH_PAUSE_BUCKETS

PauseEnd = Literal["resumed", "timed_out"]


def record_poll_outcome(outcome: str, *, api: str, polls: int = 1) -> None:
    """Status reads of the job, by how they came out (``ok``, ``rate_limit``, ``auth_required``, ...).

    ``polls`` is how many reads ``outcome`` stands for: more than one in the activity poll mode, which returns
    only when something happens, so every read before the last one was a plain ``ok``.
    """
    if polls < 1:
        return
    counter = workflow.metric_meter().create_counter(POLLS, "Status reads of external jobs, by outcome class")
    if polls > 1:
        counter.add(polls - 1, {"api": api, "outcome": "ok"})
    counter.add(1, {"api": api, "outcome": str(outcome)})


def record_state_change(old: JobState, new: JobState, *, api: str) -> None:
    """A job's state changed: count it when it ends (once) and when it pauses for auth."""
    meter = workflow.metric_meter()
    if new is JobState.AUTH_PAUSED and old is not JobState.AUTH_PAUSED:
        meter.create_counter(AUTH_PAUSES, "Jobs paused until their credentials were fixed").add(1, {"api": api})
    if new.is_terminal and not old.is_terminal:
        meter.create_counter(JOBS_TERMINAL, "Jobs that ended, by terminal state").add(
            1, {"api": api, "state": new.value}
        )


def record_pause_ended(seconds: float, *, api: str, outcome: PauseEnd) -> None:
    """An auth pause ended after ``seconds`` (workflow time): resumed by the signal, or timed out."""
    meter = workflow.metric_meter()
    meter.create_histogram_float(AUTH_PAUSE_SECONDS, "How long jobs stayed paused for auth", "s").record(
        max(seconds, 0.0), {"api": api, "outcome": outcome}
    )
    if outcome == "resumed":
        meter.create_counter(AUTH_RESUMES, "Auth pauses ended by the resume signal").add(1, {"api": api})
