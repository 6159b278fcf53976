"""The job workflow's input, state and result: JSON-friendly pydantic models, no secrets anywhere."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from jobspec import ActionSpec, AnalyzeSpec, ApiSpec

TASK_QUEUE = "long-running-jobs"
WORKFLOW_TYPE = "LongRunningJob"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> Any:
    """Accept ``90``, ``"90s"``, ``"30m"``, ``"24h"``, ``"7d"`` as well as what pydantic takes (ISO 8601)."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    return value


# Durations read "24h" or a number of seconds and are written as seconds: easy to type on a command line.
Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(lambda d: d.total_seconds(), return_type=float, when_used="json"),
]


class JobState(StrEnum):
    """Where a job is; also the ``JobState`` search attribute's values."""

    SUBMITTING = "submitting"
    POLLING = "polling"
    RATE_LIMITED = "rate_limited"
    AUTH_PAUSED = "auth_paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED})


class JobOptions(BaseModel):
    """How patiently to poll, back off and wait. Every field has a default a production job can live with."""

    model_config = ConfigDict(extra="forbid")

    poll_interval_seconds: float = Field(default=5.0, gt=0)
    job_timeout: Duration = Field(default=timedelta(hours=24), gt=timedelta(0))
    max_polls: int | None = Field(default=None, ge=1)
    initial_backoff_seconds: float = Field(default=5.0, gt=0)
    max_backoff_seconds: float = Field(default=300.0, gt=0)
    max_consecutive_errors: int = Field(default=5, ge=1)
    auth_pause_timeout: Duration = Field(default=timedelta(days=7), gt=timedelta(0))
    completion: Literal["poll", "callback", "hybrid"] = Field(
        default="poll",
        description="poll: poll every poll_interval_seconds; callback: wait for the API's callback (until the "
        "job timeout); hybrid: callback first, with slow fallback polling",
    )
    callback_fallback_poll_seconds: float = Field(default=60.0, gt=0)
    poll_mode: Literal["timer", "activity"] | None = Field(
        default=None,
        description="timer: each poll is a local activity and a durable timer (about 6 history events); "
        "activity: one heartbeating activity polls until something happens (no history while nothing does); "
        "unset: activity for new jobs (README, Performance). Callback completion always uses timers.",
    )
    history_events_per_run: int = Field(
        default=8_000,
        ge=500,
        le=10_000,
        description="hand over to a new run (continue-as-new) past this many history events, if the server "
        "has not suggested it earlier; lower it for a cluster with a lower history limit",
    )


class ErrorInfo(BaseModel):
    """The last thing that went wrong, as an operator needs to read it."""

    error_class: str
    http_status: int | None = None
    message: str = ""
    step: str = ""
    at: datetime | None = None


class JobStatus(BaseModel):
    """Everything an operator sees (status query, search attribute, summaries) derives from this one object.

    It is also what continue-as-new carries into the next run, so a job's counters and pause state survive
    any number of hand-overs.
    """

    state: JobState = JobState.SUBMITTING
    api: str = ""
    job_id: str | None = None
    status_url: str | None = None
    poll_count: int = 0
    consecutive_error_count: int = 0
    total_error_count: int = 0
    submit_attempts: int = 0
    last_error: ErrorInfo | None = None
    current_backoff_seconds: float | None = None
    next_backoff_seconds: float | None = None
    next_poll_time: datetime | None = None
    progress: float | None = None
    status_word: str | None = None
    warning: str | None = None
    started_at: datetime | None = None
    deadline: datetime | None = None
    paused_since: datetime | None = None
    resume_note: str | None = None
    callbacks_received: int = 0
    runs: int = 1


NotifyEvent = Literal["submitted", "auth_paused", "succeeded", "failed", "cancelled", "timed_out"]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = ("submitted", "auth_paused", "succeeded", "failed", "cancelled", "timed_out")


class NotifyTarget(BaseModel):
    """An outbound webhook: POSTed (Standard Webhooks signed) on the listed events; never blocks the job."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://")
    events: list[NotifyEvent] = Field(default_factory=lambda: list(NOTIFY_EVENTS))


class JobRequest(JobOptions):
    """The workflow's one input: which API, what to send, and the options above (flat, for the CLI's sake).

    ``spec`` is the resolved API description; ``starter.py`` fills it. Started without it (for example by
    ``temporal workflow start --input '{"api": "demo"}'``), the workflow resolves ``api`` with ``variables``
    on the worker, once, and keeps the result in its history.
    """

    api: str = Field(min_length=1)
    input: Any = Field(default=None, description="the job's own input, sent as the submit body template says")
    variables: dict[str, str] = Field(default_factory=dict)
    spec: ApiSpec | None = None
    publish_job_state: bool = Field(
        default=True,
        description="upsert the JobState search attribute; off only where the namespace cannot have it "
        "(the time-skipping test server implements no search attribute registration)",
    )
    notify: list[NotifyTarget] = Field(default_factory=list)
    actions: list[ActionSpec] = Field(default_factory=list)
    analyze: AnalyzeSpec | None = Field(
        default=None, description="after success, have a language model analyse the result (the spec may set one)"
    )
    # Set only by continue-as-new: the previous run's state, and callbacks not yet acted on.
    carried_status: JobStatus | None = None
    carried_callbacks: list[Any] = Field(default_factory=list)


class JobResult(BaseModel):
    """What a succeeded job returns."""

    job_id: str
    state: JobState
    result: Any = None
    poll_count: int
    total_error_count: int
    runs: int = 1
    actions: dict[str, Any] = Field(default_factory=dict)
    action_errors: dict[str, str] = Field(default_factory=dict)
    analysis: dict[str, Any] | None = None
    analysis_error: str | None = None
    analysis_trimmed_chars: int = 0


class ResumeInput(BaseModel):
    """Optional payload of the ``resume`` signal."""

    note: str | None = None
