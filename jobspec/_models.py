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
    model_config = ConfigDict(extra="forbid", frozen=True)


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

    @model_validator(mode="after")
    def _needs_a_source(self) -> AuthSpec:
        if self.type != "none" and not (self.secret_env or self.secret_file or self.secret_file_env):
            raise ValueError(f"auth type {self.type!r} needs secret_env, secret_file or secret_file_env")
        return self


class SubmitSpec(_SpecModel):
    """How to create the job, and where its id is in the answer."""

    method: Literal["POST", "PUT"] = "POST"
    path: str = "/jobs"
    body: Any = Field(
        default="$input",
        description='JSON template: the string "$input" stands for the job input; "{name}" in strings for variables',
    )
    headers: dict[str, str] = Field(default_factory=dict)
    job_id_path: str | None = Field(default="id", description="JSON path of the job id in the response body")
    job_id_from_location: bool = Field(
        default=False, description="take the job id from the last segment of the Location header"
    )
    idempotency_header: str | None = Field(
        default="Idempotency-Key", description="header carrying a key derived from the workflow id; none to omit"
    )

    @model_validator(mode="after")
    def _needs_an_id(self) -> SubmitSpec:
        if not self.job_id_path and not self.job_id_from_location:
            raise ValueError("set job_id_path or job_id_from_location: the job id must come from somewhere")
        return self


class StatusSpec(_SpecModel):
    """How to read a job's status, and what the API's status words mean."""

    method: Literal["GET", "POST"] = "GET"
    path: str = "/jobs/{job_id}"
    status_path: str = "status"
    states: dict[str, JobPhase] = Field(
        description="the API's status words mapped to pending/running/succeeded/failed/cancelled; "
        "an unknown word counts as running, with a warning"
    )
    progress_path: str | None = None
    progress_scale: float = Field(default=100.0, gt=0, description="the value that means done: 100 or 1")
    error_path: str | None = "error"
    result_path: str | None = Field(default="result", description="JSON path of an inline result")


class ResultSpec(_SpecModel):
    """Fetch the result from its own URL once the job succeeded (when it is not inline in the status)."""

    method: Literal["GET", "POST"] = "GET"
    path: str
    result_path: str | None = Field(default=None, description="JSON path inside the fetched document")


class CancelSpec(_SpecModel):
    """How to cancel the external job; omit the section when the API cannot cancel."""

    method: Literal["POST", "DELETE", "PUT"] = "POST"
    path: str


class HttpTimeouts(_SpecModel):
    """Per-request limits; a slow or silent server is a transient error, never a hung activity."""

    connect_seconds: float = Field(default=5.0, gt=0)
    read_seconds: float = Field(default=30.0, gt=0)
    max_response_bytes: int = Field(default=10_000_000, gt=0)


class ApiSpec(_SpecModel):
    """One job API, described well enough to submit, poll, fetch the result and cancel without code."""

    name: str
    description: str = ""
    base_url: str = "{base_url}"
    variables: dict[str, VariableSpec] = Field(default_factory=dict)
    auth: AuthSpec = AuthSpec()
    submit: SubmitSpec = SubmitSpec()
    status: StatusSpec
    result: ResultSpec | None = None
    cancel: CancelSpec | None = None
    timeouts: HttpTimeouts = HttpTimeouts()

    @model_validator(mode="after")
    def _status_words_cover_the_end(self) -> ApiSpec:
        phases = set(self.status.states.values())
        if JobPhase.SUCCEEDED not in phases:
            raise ValueError("status.states maps no word to 'succeeded': the job could never finish")
        return self
