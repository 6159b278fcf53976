"""The HTTP activities: one call each (submit, poll, fetch result, cancel), sharing one ``httpx.AsyncClient``."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypedDict
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._analysis import (
    SYSTEM_PROMPT,
    AnalyzeInput,
    Refusal,
    analysis_outcome,
    build_prompt,
    chat_body,
    invalid,
    parse_analysis,
    reply_text,
)
from activities._credentials import CredentialMissing, auth_headers
from activities._outcome import (
    BodyTooLarge,
    HttpOutcome,
    MalformedBody,
    OutcomeClass,
    classify_status_code,
    error_outcome,
    exception_outcome,
    short,
)
from activities._urls import BadJobId, ForeignOrigin, build_url, check_origin, url_from_answer
from callbacks import callback_url, read_secret_setting, signed_headers
from jobspec import (
    ActionSpec,
    ApiSpec,
    AuthSpec,
    HttpTimeouts,
    JobPhase,
    OutcomeOverride,
    SpecError,
    StatusSpec,
    extract,
    load_spec,
    resolve_spec,
)

# A slow, trickling answer must not hold an activity for ever: the whole call is bounded by this multiple
# of the read timeout (each chunk alone would pass the read timeout).
_WHOLE_CALL_FACTOR = 2.0

# Requests one worker has in flight at once; more wait their turn (the HTTP client's pool is this size too).
MAX_REQUESTS_IN_FLIGHT = 100

# The model endpoint's credential, read on the worker at call time like any API's; models can be slow.
LLM_AUTH = AuthSpec(type="bearer", secret_env="LLM_API_KEY", secret_file_env="LLM_API_KEY_FILE", optional=True)
LLM_TIMEOUTS = HttpTimeouts(read_seconds=120.0)

# Turns a 2xx answer into an outcome; raises MalformedBody when the answer is not what the spec promised.
Reader = Callable[[httpx.Response, bytes], HttpOutcome]


class CallbackNotConfigured(Exception):
    """Callback completion was asked for, but the worker has no callback receiver settings."""


class ResolveSpecInput(BaseModel):
    """A preset or spec file, and variables, to resolve on the worker (when the starter did not)."""

    api: str
    variables: dict[str, str] = {}


class SubmitJobInput(BaseModel):
    spec: ApiSpec
    job_input: Any = None
    idempotency_key: str
    workflow_id: str = ""
    # Ask the API to call back: the activity adds this job's callback URL (it holds a token, so it is made
    # here from the worker's settings and never passes through history).
    callback: bool = False


class PollJobInput(BaseModel):
    spec: ApiSpec
    job_id: str
    status_url: str | None = None


class WatchJobInput(BaseModel):
    """Poll in the activity until something happens (the ``activity`` poll mode)."""

    spec: ApiSpec
    job_id: str
    status_url: str | None = None
    poll_interval_seconds: float
    first_wait_seconds: float
    last_phase: JobPhase | None = None
    last_progress: float | None = None
    progress_step: float = 10.0
    max_polls: int | None = None
    deadline: datetime


class FetchResultInput(BaseModel):
    spec: ApiSpec
    job_id: str
    result_ref: str | None = None


class CancelJobInput(BaseModel):
    spec: ApiSpec
    job_id: str


class InterpretCallbackInput(BaseModel):
    """A verified callback body, read as a status document (webhook-only APIs)."""

    spec: ApiSpec
    body: Any = None


class NotificationInput(BaseModel):
    url: str
    event: str
    payload: dict[str, Any]
    message_id: str = ""


class ActionInput(BaseModel):
    action: ActionSpec
    result: Any = None
    job_input: Any = None
    job_id: str


_MISSING = object()


def _fill_input(template: Any, job_input: Any, job_id: str | None) -> Any:
    """Build a request body: "$input" is the job input, "$input.KEY" one field, "{job_id}" the chosen id."""
    if isinstance(template, str):
        if template == "$input":
            return job_input
        if template.startswith("$input."):
            value = extract(job_input, template[len("$input."):])
            return _MISSING if value is None else value
        return template.replace("{job_id}", job_id) if job_id is not None else template
    if isinstance(template, list):
        return [item for item in (_fill_input(t, job_input, job_id) for t in template) if item is not _MISSING]
    if isinstance(template, dict):
        filled = {key: _fill_input(value, job_input, job_id) for key, value in template.items()}
        return {key: value for key, value in filled.items() if value is not _MISSING}
    return template


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise MalformedBody(f"not JSON ({short(body.decode('utf-8', 'replace'), 60)!r})") from None


def _text(value: Any) -> str:
    """An API's error as one line: its ``message`` when it is an object, else its JSON."""
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        return short(value["message"])
    return short(value if isinstance(value, str) else json.dumps(value))


def _override(
    overrides: Sequence[OutcomeOverride], step: str, status_code: int, body: bytes
) -> OutcomeOverride | None:
    for override in overrides:
        if override.status != status_code or override.step not in ("any", step):
            continue
        if override.body_contains and override.body_contains not in body.decode("utf-8", "replace"):
            continue
        return override
    return None


class JobApiActivities:
    """HTTP activities for any job API described by an :class:`ApiSpec`.

    One instance per worker holds the one shared ``httpx.AsyncClient`` (connection pooling across thousands
    of jobs). ``environ`` is where credentials are read from; tests pass their own.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        environ: Mapping[str, str] | None = None,
        max_requests_in_flight: int = MAX_REQUESTS_IN_FLIGHT,
    ) -> None:
        self._http = http
        self._environ = os.environ if environ is None else environ
        # Requests wait here, not in httpx's pool: the pool scans its whole queue of waiting requests on
        # every request it starts or ends, so thousands of jobs polling at once spent a core on that scan (seen
        # at 2,000 jobs polled every second: polls stopped, CPU stayed busy). The wait is local, so it is not
        # part of the request's timeout; the activity heartbeats through it.
        self._in_flight = asyncio.Semaphore(max_requests_in_flight)
        # Polls, the bulk of the traffic, may hold at most this many of those places: a submission, result or
        # cancellation never queues behind thousands of polls (it did at 2,000 jobs polled every second: each
        # submit waited past its heartbeat timeout, was retried, and new jobs never started).
        self._poll_places = asyncio.Semaphore(max(1, max_requests_in_flight * 4 // 5))

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
        """Create the external job once: a retry carries the same idempotency key (or the same chosen id)."""
        spec = input.spec
        submit = spec.submit
        chosen_id = submit.client_job_id.replace("{workflow_id}", input.workflow_id) if submit.client_job_id else None
        headers = dict(submit.headers)
        if submit.idempotency_header:
            headers[submit.idempotency_header] = input.idempotency_key
        body = _fill_input(submit.body, input.job_input, chosen_id)
        if input.callback:
            try:
                body = self._with_callback_url(spec, body, input.workflow_id)
            except CallbackNotConfigured as exc:
                return HttpOutcome(outcome=OutcomeClass.PERMANENT, message=str(exc))

        def read(response: httpx.Response, raw: bytes) -> HttpOutcome:
            return self._read_submit(spec, response, raw, chosen_id)

        def target() -> str:
            return build_url(spec, submit.path, job_id=chosen_id)

        return await self._call(
            "submit", submit.method, target, read, **_per_api(spec), headers=headers, json_body=body,
            chosen_id=chosen_id,
        )

    def _with_callback_url(self, spec: ApiSpec, body: Any, workflow_id: str) -> Any:
        callback = spec.callback
        base = self._environ.get("CALLBACK_BASE_URL")
        secret = read_secret_setting(self._environ, "CALLBACK_SECRET")
        if callback is None or not base or not secret:
            raise CallbackNotConfigured(
                "callback completion needs CALLBACK_BASE_URL and CALLBACK_SECRET on the worker "
                "(run it with --callbacks-port, see README)"
            )
        if not isinstance(body, dict):
            raise CallbackNotConfigured("callback completion needs a JSON object as the submit body")
        return {**body, **callback.extra_body, callback.url_field: callback_url(base, secret, workflow_id)}

    @activity.defn(name="poll_job")
    async def poll_job(self, input: PollJobInput) -> HttpOutcome:
        """Read the job's status once."""
        spec = input.spec

        def target() -> str:
            if input.status_url:
                return check_origin(spec, input.status_url)
            return build_url(spec, spec.status.path, job_id=input.job_id)

        def read(response: httpx.Response, raw: bytes) -> HttpOutcome:
            return self._read_status(spec, raw, status_code=response.status_code, url=str(response.url))

        return await self._call("poll", spec.status.method, target, read, **_per_api(spec))

    @activity.defn(name="watch_job")
    async def watch_job(self, input: WatchJobInput) -> HttpOutcome:
        """Poll every ``poll_interval_seconds`` and return only when something happens.

        Something is: a status change, any outcome that is not a plain success, a progress step, the poll
        budget or the deadline. Uneventful polls so cost no workflow history at all, while the workflow still
        makes every decision. Heartbeats carry the poll count, so a retry after a worker crash continues the
        count; cancellation (the workflow's, or the worker shutting down) reaches it through the heartbeat.
        """
        details = activity.info().heartbeat_details
        polls = int(details[0]) if details else 0
        wait = input.first_wait_seconds if polls == 0 else input.poll_interval_seconds
        poll_input = PollJobInput(spec=input.spec, job_id=input.job_id, status_url=input.status_url)
        heartbeat = _Heartbeat()
        while True:
            remaining = (input.deadline - datetime.now(UTC)).total_seconds()
            if remaining <= 0:
                return HttpOutcome(outcome=OutcomeClass.OK, phase=JobPhase.RUNNING, status_word="deadline", polls=polls)
            await heartbeat.sleep(min(wait, remaining), polls)
            details_token = _heartbeat_details.set((polls,))
            try:
                outcome = await self.poll_job(poll_input)
            finally:
                _heartbeat_details.reset(details_token)
            polls += 1
            if _eventful(outcome, input) or (input.max_polls is not None and polls >= input.max_polls):
                return outcome.model_copy(update={"polls": polls})
            heartbeat.beat_if_due(polls)
            wait = input.poll_interval_seconds

    @activity.defn(name="fetch_result")
    async def fetch_result(self, input: FetchResultInput) -> HttpOutcome:
        """Fetch the result of a succeeded job from its own URL."""
        spec = input.spec
        result_spec = spec.result
        if result_spec is None:
            raise ApplicationError("spec has no result section", type="InvalidSpec", non_retryable=True)
        if (result_spec.id_path or result_spec.link_path) and not input.result_ref:
            # e.g. a batch that completed with every line failed has no output file: nothing to fetch.
            return HttpOutcome(outcome=OutcomeClass.OK, message="the final status names no result to fetch")

        def target() -> str:
            if result_spec.link_path and input.result_ref:
                return check_origin(spec, input.result_ref)
            assert result_spec.path is not None  # the model requires path or link_path
            return build_url(spec, result_spec.path, job_id=input.job_id, result_id=input.result_ref)

        def read(response: httpx.Response, raw: bytes) -> HttpOutcome:
            value: Any
            if result_spec.format == "text":
                value = raw.decode("utf-8", "replace")
            elif result_spec.format == "jsonl":
                value = [_json(line) for line in raw.splitlines() if line.strip()]
            else:
                value = _json(raw)
            if result_spec.result_path:
                value = extract(value, result_spec.result_path)
            return HttpOutcome(outcome=OutcomeClass.OK, http_status=response.status_code, result=value)

        return await self._call("result", result_spec.method, target, read, **_per_api(spec))

    @activity.defn(name="cancel_job")
    async def cancel_job(self, input: CancelJobInput) -> HttpOutcome:
        """Ask the API to cancel the job (best effort: the caller makes one attempt)."""
        spec = input.spec
        cancel = spec.cancel
        if cancel is None:
            return HttpOutcome(outcome=OutcomeClass.OK, message="this API cannot cancel jobs")
        return await self._call(
            "cancel",
            cancel.method,
            lambda: build_url(spec, cancel.path, job_id=input.job_id),
            lambda response, _raw: HttpOutcome(outcome=OutcomeClass.OK, http_status=response.status_code),
            **_per_api(spec),
        )

    @activity.defn(name="interpret_callback")
    async def interpret_callback(self, input: InterpretCallbackInput) -> HttpOutcome:
        """Read a webhook-only API's verified callback body as the job's status."""
        body = json.dumps(input.body).encode()
        try:
            return self._read_status(input.spec, body, status_code=None, url=input.spec.base_url)
        except (MalformedBody, ForeignOrigin) as exc:
            return HttpOutcome(outcome=OutcomeClass.TRANSIENT, message=short(f"callback: {exc}"))

    @activity.defn(name="send_notification")
    async def send_notification(self, input: NotificationInput) -> None:
        """POST one outbound notification, Standard Webhooks signed when NOTIFY_SIGNING_SECRET is set.

        Raises on failure so Temporal retries it with backoff; a 4xx that retrying cannot fix stops at once.
        """
        body = json.dumps(input.payload, separators=(",", ":"), default=str).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "longjobs"}
        secret = read_secret_setting(self._environ, "NOTIFY_SIGNING_SECRET")
        if secret:
            msg_id = input.message_id or f"{activity.info().workflow_id}:{activity.info().activity_id}"
            headers.update(signed_headers(secret, body, msg_id=msg_id))
        try:
            async with self._in_flight:
                response = await self._http.post(input.url, content=body, headers=headers, timeout=httpx.Timeout(15.0))
        except httpx.HTTPError as exc:
            raise ApplicationError(f"notification to {input.url} failed: {type(exc).__name__}") from None
        outcome = classify_status_code(response.status_code)
        if outcome is OutcomeClass.PERMANENT:
            raise ApplicationError(
                f"notification to {input.url} refused: HTTP {response.status_code}", non_retryable=True
            )
        if outcome is not OutcomeClass.OK:
            raise ApplicationError(f"notification to {input.url}: HTTP {response.status_code}")

    @activity.defn(name="run_action")
    async def run_action(self, input: ActionInput) -> HttpOutcome:
        """One follow-up call with the job's result; its JSON answer (or text) is the outcome's result."""
        action = input.action
        body = _fill_action_body(action.body, input)

        def read(response: httpx.Response, raw: bytes) -> HttpOutcome:
            try:
                value: Any = json.loads(raw) if raw.strip() else None
            except ValueError:
                value = raw.decode("utf-8", "replace")
            return HttpOutcome(outcome=OutcomeClass.OK, http_status=response.status_code, result=value)

        return await self._call(
            f"action {action.name}", action.method, lambda: action.url, read,
            auth=action.auth, timeouts=HttpTimeouts(), headers={"Content-Type": "application/json", **action.headers},
            json_body=body,
        )

    @activity.defn(name="analyze_result")
    async def analyze_result(self, input: AnalyzeInput) -> HttpOutcome:
        """Ask an OpenAI-compatible chat-completions endpoint to analyse a result; validate the reply.

        A reply that does not validate gets one repair request in the same call. An endpoint that refuses the
        JSON-schema response format is asked again without it. No ``LLM_BASE_URL``: nothing to do.
        """
        base = self._environ.get("LLM_BASE_URL")
        if not base:
            return HttpOutcome(
                outcome=OutcomeClass.OK,
                message="no model endpoint configured: set LLM_BASE_URL (and LLM_MODEL, LLM_API_KEY) on the worker",
            )
        model = input.spec.model or self._environ.get("LLM_MODEL") or "gpt-4o-mini"
        prompt, trimmed = build_prompt(input.spec, input.job_input, input.result)
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
        url = base.rstrip("/") + "/chat/completions"
        json_schema = self._environ.get("LLM_JSON_SCHEMA", "1") != "0"

        def read(response: httpx.Response, raw: bytes) -> HttpOutcome:
            try:
                text = reply_text(_json(raw))
            except Refusal as refusal:
                return HttpOutcome(
                    outcome=OutcomeClass.PERMANENT, http_status=response.status_code,
                    message=short(f"the model refused: {refusal}"),
                )
            if text is None:
                raise MalformedBody("no choices[0].message.content in the model's answer")
            return HttpOutcome(outcome=OutcomeClass.OK, http_status=response.status_code, result=text)

        repaired = False
        while True:
            outcome = await self._call(
                "analyze", "POST", lambda: url, read, auth=LLM_AUTH, timeouts=LLM_TIMEOUTS,
                json_body=chat_body(model, messages, json_schema=json_schema),
            )
            if (
                # 400 from most, 422 from some (e.g. DeepSeek) when structured output is not supported.
                json_schema and outcome.outcome is OutcomeClass.PERMANENT and outcome.http_status in (400, 422)
                and "response_format" in outcome.message
            ):
                json_schema = False  # an endpoint without structured output: the prompt asks for JSON
                continue
            if outcome.outcome is not OutcomeClass.OK:
                return outcome
            text = str(outcome.result)
            try:
                return analysis_outcome(parse_analysis(text), trimmed, repaired)
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                if repaired:
                    return HttpOutcome(
                        outcome=OutcomeClass.PERMANENT,
                        message=f"the model's reply did not validate, even after a repair request: {invalid(exc)}",
                    )
                repaired = True
                messages += [
                    {"role": "assistant", "content": text[:4000]},
                    {"role": "user", "content": f"That reply did not validate ({invalid(exc)}). "
                                                "Reply again with only the JSON object."},
                ]

    # -- reading answers ------------------------------------------------------------------------------------

    @staticmethod
    def _read_submit(spec: ApiSpec, response: httpx.Response, body: bytes, chosen_id: str | None) -> HttpOutcome:
        submit = spec.submit
        doc: Any = None
        if body.strip():
            try:
                doc = _json(body)
            except MalformedBody:
                # An id chosen by us or named by the Location header does not need the body.
                if not (submit.job_id_from_location or chosen_id) or spec.status.url_from == "link":
                    raise
        job_id: Any = extract(doc, submit.job_id_path) if submit.job_id_path and doc is not None else None
        location = response.headers.get("location", "")
        if job_id in (None, "") and submit.job_id_from_location and location:
            job_id = urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1] or None
        if job_id in (None, "") and chosen_id:
            job_id = chosen_id
        if job_id in (None, "") or isinstance(job_id, dict | list):
            where = submit.job_id_path or "the Location header"
            raise MalformedBody(f"submit answered {response.status_code} without a job id at {where!r}")
        status_url = None
        if spec.status.url_from == "location":
            if not location:
                raise MalformedBody(f"submit answered {response.status_code} without a Location header")
            status_url = url_from_answer(spec, str(response.url), location)
        elif spec.status.url_from == "link":
            assert spec.status.link_path is not None
            link = extract(doc, spec.status.link_path)
            if not isinstance(link, str) or not link:
                raise MalformedBody(f"submit answered without a status link at {spec.status.link_path!r}")
            status_url = url_from_answer(spec, str(response.url), link)
        return HttpOutcome(
            outcome=OutcomeClass.OK, http_status=response.status_code, job_id=str(job_id), status_url=status_url
        )

    @staticmethod
    def _read_status(spec: ApiSpec, body: bytes, *, status_code: int | None, url: str) -> HttpOutcome:
        status_spec = spec.status
        doc = _json(body)
        warning = None
        error = extract(doc, status_spec.error_path) if status_spec.error_path else None
        if status_spec.done_path:
            done = extract(doc, status_spec.done_path)
            word = "done" if done is True else "not done"
            if done is not True:
                phase = JobPhase.RUNNING
            elif error not in (None, "", {}):
                condition = status_spec.cancelled_when
                cancelled = condition is not None and extract(doc, condition.path) == condition.equals
                phase = JobPhase.CANCELLED if cancelled else JobPhase.FAILED
            else:
                phase = JobPhase.SUCCEEDED
        else:
            assert status_spec.status_path is not None  # the model requires a word or a flag
            raw_word = extract(doc, status_spec.status_path)
            if raw_word is None or isinstance(raw_word, dict | list):
                raise MalformedBody(f"no status word at {status_spec.status_path!r}")
            word = str(raw_word).lower() if isinstance(raw_word, bool) else str(raw_word)
            known = status_spec.states.get(word)
            if known is None:
                # A new status word from the API must not break running jobs: carry on polling, and say so.
                known = JobPhase.RUNNING
                warning = f"unknown status word {word!r} from {spec.name!r}; treated as running"
                activity.logger.warning(warning)
            phase = known
        progress = _progress(status_spec, doc)
        result = None
        result_ref = None
        if phase is JobPhase.SUCCEEDED:
            if spec.result is None:
                result = extract(doc, status_spec.result_path) if status_spec.result_path else None
            elif spec.result.id_path or spec.result.link_path:
                ref = extract(doc, spec.result.id_path or spec.result.link_path or "")
                if isinstance(ref, str) and ref:
                    result_ref = ref if spec.result.id_path else url_from_answer(spec, url, ref)
        job_error = None
        if phase in (JobPhase.FAILED, JobPhase.CANCELLED) and error not in (None, "", {}):
            job_error = _text(error)
        return HttpOutcome(
            outcome=OutcomeClass.OK,
            http_status=status_code,
            phase=phase,
            status_word=short(word, 80),
            progress=progress,
            result=result,
            result_ref=result_ref,
            job_error=job_error,
            warning=warning,
        )

    # -- the one HTTP call ----------------------------------------------------------------------------------

    async def _call(
        self,
        step: str,
        method: str,
        target: Callable[[], str],
        read: Reader,
        *,
        auth: AuthSpec,
        timeouts: HttpTimeouts,
        overrides: Sequence[OutcomeOverride] = (),
        headers: dict[str, str] | None = None,
        json_body: Any = None,
        chosen_id: str | None = None,
    ) -> HttpOutcome:
        """Make one request and classify what came of it; never raises for HTTP trouble."""
        try:
            # The URL first: a foreign or unsafe one fails before any credential is read or sent.
            url = target()
        except (ForeignOrigin, BadJobId) as exc:
            return HttpOutcome(outcome=OutcomeClass.PERMANENT, message=short(str(exc)))
        try:
            credentials, secret = auth_headers(auth, self._environ)
        except CredentialMissing as exc:
            # Nothing a retry can fix: a person must provide the credential, then resume.
            return HttpOutcome(outcome=OutcomeClass.AUTH_REQUIRED, message=str(exc))
        all_headers = {**(headers or {}), **credentials}
        try:
            async with _heartbeating(), self._places(step):
                async with asyncio.timeout(timeouts.read_seconds * _WHOLE_CALL_FACTOR):
                    response, body = await self._send(timeouts, method, url, all_headers, json_body)
            if secret:
                # An API that echoes the credential back (in an error, a status, a result) must not get it
                # into history: scrub it from the raw body, before anything is parsed or shortened.
                body = body.replace(secret.encode(), b"***")
            override = None if response.is_success else _override(overrides, step, response.status_code, body)
            if override is not None:
                outcome = _overridden(override, response, body, chosen_id)
            elif response.is_success:
                outcome = read(response, body)
            else:
                outcome = error_outcome(response.status_code, response.headers, body)
        except ForeignOrigin as exc:
            outcome = HttpOutcome(outcome=OutcomeClass.PERMANENT, message=short(str(exc)))
        except (httpx.HTTPError, BodyTooLarge, MalformedBody, TimeoutError) as exc:
            outcome = exception_outcome(exc)
        if secret and secret in outcome.message:
            # Exception texts are not from the body; scrub them too.
            outcome = outcome.model_copy(update={"message": outcome.message.replace(secret, "***")})
        return outcome

    @contextlib.asynccontextmanager
    async def _places(self, step: str) -> AsyncIterator[None]:
        """A place among the requests in flight (for a poll, among the polls' share of them first)."""
        if step == "poll":
            async with self._poll_places, self._in_flight:
                yield
        else:
            async with self._in_flight:
                yield

    async def _send(
        self, timeouts: HttpTimeouts, method: str, url: str, headers: dict[str, str], json_body: Any
    ) -> tuple[httpx.Response, bytes]:
        timeout = httpx.Timeout(timeouts.read_seconds, connect=timeouts.connect_seconds, pool=timeouts.connect_seconds)
        kwargs: dict[str, Any] = {"headers": headers, "timeout": timeout}
        if json_body is not None and method in ("POST", "PUT"):
            kwargs["json"] = json_body
        async with self._http.stream(method, url, **kwargs) as response:
            limit = timeouts.max_response_bytes
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


def _progress(status_spec: StatusSpec, doc: Any) -> float | None:
    if not status_spec.progress_path:
        return None
    raw = extract(doc, status_spec.progress_path)
    if not isinstance(raw, int | float) or isinstance(raw, bool):
        return None
    if status_spec.progress_total_path:
        total = extract(doc, status_spec.progress_total_path)
        if not isinstance(total, int | float) or isinstance(total, bool) or total <= 0:
            return None
        return max(0.0, min(100.0, float(raw) * 100.0 / float(total)))
    return max(0.0, min(100.0, float(raw) * 100.0 / status_spec.progress_scale))


def _overridden(override: OutcomeOverride, response: httpx.Response, body: bytes, chosen_id: str | None) -> HttpOutcome:
    """The outcome a spec's override gives an answer."""
    status = response.status_code
    if override.outcome == "already_exists":
        if chosen_id is None:
            return HttpOutcome(outcome=OutcomeClass.PERMANENT, http_status=status, message="already exists, but no id")
        # The first attempt created it (a retry after a lost answer): adopt it, never submit again.
        return HttpOutcome(
            outcome=OutcomeClass.OK, http_status=status, job_id=chosen_id, message="adopted the existing job"
        )
    if override.outcome == "in_progress":
        return HttpOutcome(outcome=OutcomeClass.OK, http_status=status, phase=JobPhase.RUNNING, status_word=str(status))
    classified = error_outcome(status, response.headers, body)
    return classified.model_copy(update={"outcome": OutcomeClass(override.outcome)})


class _PerApi(TypedDict):
    auth: AuthSpec
    timeouts: HttpTimeouts
    overrides: Sequence[OutcomeOverride]


def _per_api(spec: ApiSpec) -> _PerApi:
    """What every call to one API shares: its credential, its limits and its reclassifications."""
    return {"auth": spec.auth, "timeouts": spec.timeouts, "overrides": spec.overrides}


def _fill_action_body(template: Any, input: ActionInput) -> Any:
    """A follow-up action's body: "$result", "$input" and "$job_id" filled in a JSON template."""
    if template == "$result":
        return input.result
    if template == "$input":
        return input.job_input
    if template == "$job_id":
        return input.job_id
    if isinstance(template, list):
        return [_fill_action_body(item, input) for item in template]
    if isinstance(template, dict):
        return {key: _fill_action_body(value, input) for key, value in template.items()}
    return template


class _Heartbeat:
    """The watch loop's heartbeats: eight per heartbeat timeout, not one per poll.

    Each heartbeat costs the worker a task and an encoding, and the SDK sends at most one per 0.8 timeouts to
    the server anyway (cancellation arrives in the server's answer), so heartbeating on every poll of a
    1-second loop only burns CPU that thousands of jobs need for their polls. Eight leave the server's last
    heartbeat well inside the timeout even when the throttled one goes out a period late. The poll count in
    the details is therefore up to one heartbeat period old after a crash: a few polls counted twice at most.
    """

    PER_TIMEOUT = 8
    DEFAULT_EVERY_SECONDS = 5.0

    def __init__(self) -> None:
        timeout = activity.info().heartbeat_timeout
        self.every = timeout.total_seconds() / self.PER_TIMEOUT if timeout else self.DEFAULT_EVERY_SECONDS
        self.last = float("-inf")

    def beat_if_due(self, polls: int) -> None:
        now = asyncio.get_running_loop().time()
        if now - self.last >= self.every:
            activity.heartbeat(polls)
            self.last = now

    async def sleep(self, seconds: float, polls: int) -> None:
        """Sleep, heartbeating when due, so a dead worker is noticed and cancellation arrives."""
        end = asyncio.get_running_loop().time() + seconds
        while True:
            self.beat_if_due(polls)
            left = end - asyncio.get_running_loop().time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, self.every - (asyncio.get_running_loop().time() - self.last)))


def _eventful(outcome: HttpOutcome, input: WatchJobInput) -> bool:
    """Whether the workflow needs to hear about this poll."""
    if outcome.outcome is not OutcomeClass.OK or outcome.warning or outcome.phase is None:
        return True
    if outcome.phase.is_terminal or outcome.phase != input.last_phase:
        return True
    if outcome.progress is None:
        return False
    before = input.last_progress or 0.0
    return int(outcome.progress // input.progress_step) != int(before // input.progress_step)


# While a request is in flight, a regular activity heartbeats, so a worker that dies mid-call is noticed in
# seconds (the workflow sets a short heartbeat timeout) instead of at the end of the start-to-close timeout.
# Local activities are retried by the workflow task itself and need none. What to send as details: the
# watch_job loop sets its poll count here so a heartbeat from inside a poll does not wipe it.
REQUEST_HEARTBEAT_SECONDS = 2.0
_heartbeat_details: contextvars.ContextVar[tuple[Any, ...]] = contextvars.ContextVar("heartbeat_details", default=())


@contextlib.asynccontextmanager
async def _heartbeating() -> AsyncIterator[None]:
    if not activity.in_activity() or activity.info().is_local:
        yield
        return
    details = _heartbeat_details.get()

    async def beat() -> None:
        # Sleep first: a request that answers within the period needs no heartbeat (the heartbeat timeout
        # runs from the activity's start or its last heartbeat).
        while True:
            await asyncio.sleep(REQUEST_HEARTBEAT_SECONDS)
            activity.heartbeat(*details)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
