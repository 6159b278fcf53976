"""The HTTP activities: one call each (submit, poll, fetch result, cancel), sharing one ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._credentials import CredentialMissing, auth_headers
from activities._outcome import (
    BodyTooLarge,
    HttpOutcome,
    MalformedBody,
    OutcomeClass,
    error_outcome,
    exception_outcome,
    short,
)
from jobspec import ApiSpec, JobPhase, SpecError, extract, load_spec, resolve_spec

# A slow, trickling answer must not hold an activity for ever: the whole call is bounded by this multiple
# of the read timeout (each chunk alone would pass the read timeout).
_WHOLE_CALL_FACTOR = 2.0

# Turns a 2xx answer into an outcome; raises MalformedBody when the answer is not what the spec promised.
Reader = Callable[[ApiSpec, httpx.Response, bytes], HttpOutcome]


class ResolveSpecInput(BaseModel):
    """A preset or spec file, and variables, to resolve on the worker (when the starter did not)."""

    api: str
    variables: dict[str, str] = {}


class SubmitJobInput(BaseModel):
    spec: ApiSpec
    job_input: Any = None
    idempotency_key: str


class PollJobInput(BaseModel):
    spec: ApiSpec
    job_id: str


class FetchResultInput(BaseModel):
    spec: ApiSpec
    job_id: str


class CancelJobInput(BaseModel):
    spec: ApiSpec
    job_id: str


def _fill_input(template: Any, job_input: Any) -> Any:
    """Put the job input where the body template says ``"$input"``."""
    if template == "$input":
        return job_input
    if isinstance(template, list):
        return [_fill_input(item, job_input) for item in template]
    if isinstance(template, dict):
        return {key: _fill_input(value, job_input) for key, value in template.items()}
    return template


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise MalformedBody(f"not JSON ({short(body.decode('utf-8', 'replace'), 60)!r})") from None


class JobApiActivities:
    """HTTP activities for any job API described by an :class:`ApiSpec`.

    One instance per worker holds the one shared ``httpx.AsyncClient`` (connection pooling across thousands
    of jobs). ``environ`` is where credentials are read from; tests pass their own.
    """

    def __init__(self, http: httpx.AsyncClient, *, environ: Mapping[str, str] | None = None) -> None:
        self._http = http
        self._environ = os.environ if environ is None else environ

    # -- the activities -------------------------------------------------------------------------------------

    @activity.defn(name="resolve_spec")
    async def resolve_spec(self, input: ResolveSpecInput) -> ApiSpec:
        """Resolve a spec on the worker: for jobs started with only ``{"api": NAME}`` (e.g. the temporal CLI)."""
        try:
            return resolve_spec(load_spec(input.api), input.variables, self._environ)
        except SpecError as exc:
            raise ApplicationError(str(exc), type="InvalidSpec", non_retryable=True) from None

    @activity.defn(name="submit_job")
    async def submit_job(self, input: SubmitJobInput) -> HttpOutcome:
        """Create the external job once; a retry carries the same idempotency key, so it cannot create two."""
        spec = input.spec
        headers = dict(spec.submit.headers)
        if spec.submit.idempotency_header:
            headers[spec.submit.idempotency_header] = input.idempotency_key
        body = _fill_input(spec.submit.body, input.job_input)
        return await self._call(spec, spec.submit.method, spec.submit.path, None, self._read_job_id, headers, body)

    @activity.defn(name="poll_job")
    async def poll_job(self, input: PollJobInput) -> HttpOutcome:
        """Read the job's status once."""
        spec = input.spec
        return await self._call(spec, spec.status.method, spec.status.path, input.job_id, self._read_status)

    @activity.defn(name="fetch_result")
    async def fetch_result(self, input: FetchResultInput) -> HttpOutcome:
        """Fetch the result of a succeeded job from its own URL."""
        spec = input.spec
        if spec.result is None:
            raise ApplicationError("spec has no result section", type="InvalidSpec", non_retryable=True)
        result_spec = spec.result

        def read_result(_spec: ApiSpec, response: httpx.Response, body: bytes) -> HttpOutcome:
            doc = _json(body)
            value = extract(doc, result_spec.result_path) if result_spec.result_path else doc
            return HttpOutcome(outcome=OutcomeClass.OK, http_status=response.status_code, result=value)

        return await self._call(spec, result_spec.method, result_spec.path, input.job_id, read_result)

    @activity.defn(name="cancel_job")
    async def cancel_job(self, input: CancelJobInput) -> HttpOutcome:
        """Ask the API to cancel the job (best effort: the caller makes one attempt)."""
        spec = input.spec
        if spec.cancel is None:
            return HttpOutcome(outcome=OutcomeClass.OK, message="this API cannot cancel jobs")
        return await self._call(
            spec,
            spec.cancel.method,
            spec.cancel.path,
            input.job_id,
            lambda _spec, response, _body: HttpOutcome(outcome=OutcomeClass.OK, http_status=response.status_code),
        )

    # -- reading answers ------------------------------------------------------------------------------------

    @staticmethod
    def _read_job_id(spec: ApiSpec, response: httpx.Response, body: bytes) -> HttpOutcome:
        job_id: Any = None
        if spec.submit.job_id_path:
            try:
                doc = _json(body) if body.strip() else None
            except MalformedBody:
                if not spec.submit.job_id_from_location:
                    raise
                doc = None  # the Location header can still name the job
            job_id = extract(doc, spec.submit.job_id_path)
        if job_id in (None, "") and spec.submit.job_id_from_location:
            location = response.headers.get("location", "")
            job_id = location.rstrip("/").rsplit("/", 1)[-1] or None
        if job_id in (None, "") or isinstance(job_id, dict | list):
            where = spec.submit.job_id_path or "the Location header"
            raise MalformedBody(f"submit answered {response.status_code} without a job id at {where!r}")
        return HttpOutcome(outcome=OutcomeClass.OK, http_status=response.status_code, job_id=str(job_id))

    @staticmethod
    def _read_status(spec: ApiSpec, response: httpx.Response, body: bytes) -> HttpOutcome:
        status_spec = spec.status
        doc = _json(body)
        word = extract(doc, status_spec.status_path)
        if word is None or isinstance(word, dict | list):
            raise MalformedBody(f"no status word at {status_spec.status_path!r}")
        word = str(word).lower() if isinstance(word, bool) else str(word)
        warning = None
        phase = status_spec.states.get(word)
        if phase is None:
            # A new status word from the API must not break running jobs: carry on polling, and say so.
            phase = JobPhase.RUNNING
            warning = f"unknown status word {word!r} from {spec.name!r}; treated as running"
            activity.logger.warning(warning)
        progress = None
        if status_spec.progress_path:
            raw = extract(doc, status_spec.progress_path)
            if isinstance(raw, int | float) and not isinstance(raw, bool):
                progress = max(0.0, min(100.0, float(raw) * 100.0 / status_spec.progress_scale))
        result = None
        if phase is JobPhase.SUCCEEDED and spec.result is None and status_spec.result_path:
            result = extract(doc, status_spec.result_path)
        job_error = None
        if phase in (JobPhase.FAILED, JobPhase.CANCELLED) and status_spec.error_path:
            raw_error = extract(doc, status_spec.error_path)
            if raw_error is not None:
                job_error = short(raw_error if isinstance(raw_error, str) else json.dumps(raw_error))
        return HttpOutcome(
            outcome=OutcomeClass.OK,
            http_status=response.status_code,
            phase=phase,
            status_word=word,
            progress=progress,
            result=result,
            job_error=job_error,
            warning=warning,
        )

    # -- the one HTTP call ----------------------------------------------------------------------------------

    async def _call(
        self,
        spec: ApiSpec,
        method: str,
        path: str,
        job_id: str | None,
        read: Reader,
        headers: dict[str, str] | None = None,
        json_body: Any = None,
    ) -> HttpOutcome:
        """Make one request and classify what came of it; never raises for HTTP trouble."""
        url = spec.base_url.rstrip("/") + (path.replace("{job_id}", quote(job_id, safe="")) if job_id else path)
        try:
            credentials, secret = auth_headers(spec.auth, self._environ)
        except CredentialMissing as exc:
            # Nothing a retry can fix: a person must provide the credential, then resume.
            return HttpOutcome(outcome=OutcomeClass.AUTH_REQUIRED, message=str(exc))
        all_headers = {**(headers or {}), **credentials}
        try:
            async with asyncio.timeout(spec.timeouts.read_seconds * _WHOLE_CALL_FACTOR):
                response, body = await self._send(spec, method, url, all_headers, json_body)
            if secret:
                # An API that echoes the credential back (in an error, a status, a result) must not get it
                # into history: scrub it from the raw body, before anything is parsed or shortened.
                body = body.replace(secret.encode(), b"***")
            if 200 <= response.status_code < 300:
                outcome = read(spec, response, body)
            else:
                outcome = error_outcome(response.status_code, response.headers, body)
        except (httpx.HTTPError, BodyTooLarge, MalformedBody, TimeoutError) as exc:
            outcome = exception_outcome(exc)
        if secret and secret in outcome.message:
            # Exception texts are not from the body; scrub them too.
            outcome = outcome.model_copy(update={"message": outcome.message.replace(secret, "***")})
        return outcome

    async def _send(
        self, spec: ApiSpec, method: str, url: str, headers: dict[str, str], json_body: Any
    ) -> tuple[httpx.Response, bytes]:
        timeout = httpx.Timeout(
            spec.timeouts.read_seconds, connect=spec.timeouts.connect_seconds, pool=spec.timeouts.connect_seconds
        )
        kwargs: dict[str, Any] = {"headers": headers, "timeout": timeout}
        if json_body is not None and method in ("POST", "PUT"):
            kwargs["json"] = json_body
        async with self._http.stream(method, url, **kwargs) as response:
            limit = spec.timeouts.max_response_bytes
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise BodyTooLarge(f"{declared} bytes declared, limit {limit}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(f"over {limit} bytes")
                chunks.append(chunk)
        return response, b"".join(chunks)

