"""The spec model: one external job API described as data (pydantic, JSON-friendly)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class JobPhase(StrEnum):
    """What an API's status word means, in the project's own words."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobPhase.SUCCEEDED, JobPhase.FAILED, JobPhase.CANCELLED)


class _SpecModel(BaseModel):
    # A typo in a spec file ("stauts_path") must be an error, not a silently ignored key.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class VariableSpec(_SpecModel):
    """A value the spec's templates use as ``{name}``: from ``--var``, else an environment variable, else a default."""

    description: str = ""
    env: str | None = Field(default=None, description="environment variable read when --var does not set it")
    default: str | None = Field(default=None, description="used when neither sets it; none means required")


class AuthSpec(_SpecModel):
    """Where the worker finds the credential; the spec holds names, never the secret itself.

    The secret is read by the activity on every call, so fixing a token file and sending ``resume`` works
    without restarting the worker. Order: the file named by ``secret_file_env`` (when that variable is set),
    then ``secret_file``, then the variable ``secret_env``.
    """

    type: Literal["none", "bearer", "header", "basic"] = "none"
    header: str = Field(default="Authorization", description="header name for type 'header'")
    secret_env: str | None = None
    secret_file: str | None = None
    secret_file_env: str | None = None
    optional: bool = Field(
        default=False,
        description="send no credential when none is configured (for servers that may run without auth); "
        "otherwise a missing credential pauses the job for a person",
    )

    @model_validator(mode="after")
    def _needs_a_source(self) -> AuthSpec:
        if self.type != "none" and not (self.secret_env or self.secret_file or self.secret_file_env):
            raise ValueError(f"auth type {self.type!r} needs secret_env, secret_file or secret_file_env")
        return self


Step = Literal["submit", "poll", "result", "cancel", "any"]


class OutcomeOverride(_SpecModel):
    """Reclassify one kind of answer for this API, e.g. Ray's HTTP 500 "already exists" on a duplicate id."""

    status: int = Field(ge=100, le=599)
    step: Step = "any"
    body_contains: str | None = Field(default=None, description="only when the body holds this text")
    outcome: Literal[
        "rate_limit", "auth_required", "permanent", "server_error", "transient", "in_progress", "already_exists"
    ] = Field(
        description="a class of the outcome table; 'in_progress' (poll: the job is still running) or "
        "'already_exists' (submit with a caller-chosen id: adopt the existing job)"
    )


class SubmitSpec(_SpecModel):
    """How to create the job, and where its id is in the answer."""

    method: Literal["POST", "PUT"] = "POST"
    path: str = "/jobs"
    body: Any = Field(
        default="$input",
        description='JSON template: "$input" is the job input, "$input.KEY" one of its fields (omitted when '
        'missing); "{name}" in strings is a variable, "{job_id}" the caller-chosen id',
    )
    headers: dict[str, str] = Field(default_factory=dict)
    job_id_path: str | None = Field(default="id", description="JSON path of the job id in the response body")
    job_id_from_location: bool = Field(
        default=False, description="take the job id from the last path segment of the Location header"
    )
    client_job_id: str | None = Field(
        default=None,
        description='a caller-chosen job id, e.g. "{workflow_id}": sent where the path or body says {job_id}; '
        "a retry then cannot create a second job, and 'already_exists' adopts the first",
    )
    idempotency_header: str | None = Field(
        default="Idempotency-Key", description="header carrying a key derived from the workflow id; none to omit"
    )

    @model_validator(mode="after")
    def _needs_an_id(self) -> SubmitSpec:
        if not (self.job_id_path or self.job_id_from_location or self.client_job_id):
            raise ValueError(
                "set job_id_path or job_id_from_location (or client_job_id): the job id must come from somewhere"
            )
        return self


class Condition(_SpecModel):
    """``path`` in the status document equals ``equals``."""

    path: str
    equals: Any


class StatusSpec(_SpecModel):
    """How to read a job's status: a status word mapped to a phase, or a ``done`` flag (AIP-151 operations)."""

    method: Literal["GET", "POST"] = "GET"
    path: str = "/jobs/{job_id}"
    url_from: Literal["path", "location", "link"] = Field(
        default="path",
        description="where the status URL is: the 'path' template, the submit answer's Location header, or a "
        "link at 'link_path' in the submit answer's body (URLs from answers must be on an allowed origin)",
    )
    link_path: str | None = None
    status_path: str | None = "status"
    states: dict[str, JobPhase] = Field(
        default_factory=dict,
        description="the API's status words mapped to pending/running/succeeded/failed/cancelled; "
        "an unknown word counts as running, with a warning",
    )
    done_path: str | None = Field(
        default=None, description="a boolean 'done' flag instead of a status word: done with an error is failed"
    )
    cancelled_when: Condition | None = Field(
        default=None, description="with done_path: an ended job that matches this was cancelled"
    )
    progress_path: str | None = None
    progress_total_path: str | None = Field(
        default=None, description="progress is progress_path / progress_total_path (e.g. completed / total)"
    )
    progress_scale: float = Field(default=100.0, gt=0, description="the value that means done: 100 or 1")
    error_path: str | None = "error"
    result_path: str | None = Field(default="result", description="JSON path of an inline result")

    @model_validator(mode="after")
    def _word_or_flag(self) -> StatusSpec:
        if self.done_path:
            return self
        if not self.status_path or not self.states:
            raise ValueError("set status_path and states (a status word), or done_path (a done flag)")
        if JobPhase.SUCCEEDED not in self.states.values():
            raise ValueError("states maps no word to 'succeeded': the job could never finish")
        if self.url_from == "link" and not self.link_path:
            raise ValueError("url_from 'link' needs link_path")
        return self


class ResultSpec(_SpecModel):
    """Fetch the result once the job succeeded, when it is not inline in the status."""

    method: Literal["GET", "POST"] = "GET"
    path: str | None = Field(
        default=None, description="URL template; {job_id}, and {result_id} when id_path is set"
    )
    id_path: str | None = Field(
        default=None, description="JSON path in the final status of an id for the path, e.g. output_file_id"
    )
    link_path: str | None = Field(default=None, description="JSON path in the final status of the result URL")
    result_path: str | None = Field(default=None, description="JSON path inside the fetched document")
    format: Literal["json", "jsonl", "text"] = "json"

    @model_validator(mode="after")
    def _somewhere(self) -> ResultSpec:
        if not (self.path or self.link_path):
            raise ValueError("set path (a URL template) or link_path (a URL in the final status)")
        return self


class CancelSpec(_SpecModel):
    """How to cancel the external job; omit the section when the API cannot cancel."""

    method: Literal["POST", "DELETE", "PUT"] = "POST"
    path: str


class CallbackSpec(_SpecModel):
    """How the API calls back when a job changes (for the ``callback`` and ``hybrid`` completion modes)."""

    url_field: str = Field(
        default="callback_url", description="the submit body's key that carries this job's callback URL"
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description='also sent when callbacks are on, e.g. {"webhook_events_filter": ["completed"]}',
    )
    webhook_only: bool = Field(
        default=False,
        description="the API has no status call: a verified callback's body is read as the job's status; "
        "otherwise a callback is a hint, confirmed with one status call before the job acts on it",
    )


class ActionSpec(_SpecModel):
    """A follow-up HTTP call made with a job's result after success; its JSON answer lands in the result."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    url: str = Field(pattern=r"^https?://")
    method: Literal["POST", "PUT"] = "POST"
    body: Any = Field(default="$result", description='JSON template: "$result", "$input" and "$job_id" are filled')
    headers: dict[str, str] = Field(default_factory=dict)
    auth: AuthSpec = AuthSpec()
    required: bool = Field(default=False, description="a failed required action fails the job")


DEFAULT_ANALYSIS_PROMPT = (
    "A long-running job has finished. Its input was:\n{input}\n\nIts result was:\n{result}\n\n"
    "Summarise what was processed, list the key findings, and give recommendations."
)


class AnalyzeSpec(_SpecModel):
    """The optional ``analyze`` step: a language model reads the result after success (per job, or per spec)."""

    prompt: str = Field(
        default=DEFAULT_ANALYSIS_PROMPT, description="template: {input} and {result} are filled (as JSON)"
    )
    max_result_chars: int = Field(default=20_000, ge=100, description="longer results are trimmed to this")
    model: str | None = Field(default=None, description="overrides the worker's LLM_MODEL")


class HttpTimeouts(_SpecModel):
    """Per-request limits; a slow or silent server is a transient error, never a hung activity."""

    connect_seconds: float = Field(default=5.0, gt=0)
    read_seconds: float = Field(default=30.0, gt=0)
    max_response_bytes: int = Field(default=10_000_000, gt=0)


class ApiSpec(_SpecModel):
    """One job API, described well enough to submit, poll, fetch the result and cancel without code."""

    schema_ref: str | None = Field(
        default=None, alias="$schema", description="the spec format's JSON Schema, for editors (ignored)"
    )
    name: str
    description: str = ""
    base_url: str = "{base_url}"
    variables: dict[str, VariableSpec] = Field(default_factory=dict)
    auth: AuthSpec = AuthSpec()
    submit: SubmitSpec = SubmitSpec()
    status: StatusSpec
    result: ResultSpec | None = None
    cancel: CancelSpec | None = None
    callback: CallbackSpec | None = None
    analyze: AnalyzeSpec | None = Field(default=None, description="analyse every job's result (see README)")
    timeouts: HttpTimeouts = HttpTimeouts()
    overrides: list[OutcomeOverride] = Field(default_factory=list)
    job_id_in_path: Literal["segment", "path"] = Field(
        default="segment",
        description="'segment' percent-encodes every '/' of a job id put in a path; 'path' keeps them, for "
        "resource names like projects/p/operations/o",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="origins (scheme://host[:port]) besides base_url's that URLs from answers may point to",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ApiSpec:
        if any(o.outcome == "already_exists" for o in self.overrides) and not self.submit.client_job_id:
            raise ValueError("an 'already_exists' override needs submit.client_job_id: there is no id to adopt")
        return self
