"""The one place where an HTTP answer (or the lack of one) becomes a classified outcome.

Activities never raise for HTTP trouble: they return an :class:`HttpOutcome` and the workflow decides. That
keeps every retry, wait and pause visible in the workflow's history and under its counters, and leaves
Temporal's own activity retries for what they are good at: a worker that died mid-call.
"""

from __future__ import annotations

import email.utils
import json
import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import httpx
from pydantic import BaseModel

from jobspec import JobPhase

MAX_MESSAGE_CHARS = 300


class OutcomeClass(StrEnum):
    """What an HTTP call came to, as the workflow needs to know it."""

    OK = "ok"
    RATE_LIMIT = "rate_limit"
    AUTH_REQUIRED = "auth_required"
    PERMANENT = "permanent"
    SERVER_ERROR = "server_error"
    TRANSIENT = "transient"


class HttpOutcome(BaseModel):
    """A classified HTTP outcome plus what the call learned. Small on purpose: it is recorded in history."""

    outcome: OutcomeClass
    http_status: int | None = None
    message: str = ""
    retry_after_seconds: float | None = None
    job_id: str | None = None
    status_url: str | None = None
    result_ref: str | None = None
    phase: JobPhase | None = None
    status_word: str | None = None
    progress: float | None = None
    result: Any = None
    job_error: str | None = None
    warning: str | None = None
    # HTTP polls behind this outcome: 1, or more when the activity polled several times (activity poll mode).
    polls: int = 1


class BodyTooLarge(Exception):
    """The response body passed the spec's ``max_response_bytes``."""


class MalformedBody(Exception):
    """The response body is not what the spec says it is (not JSON, no id, no status)."""


def classify_status_code(status_code: int) -> OutcomeClass:
    """The classification table for HTTP status codes (README, "How outcomes are handled")."""
    if 200 <= status_code < 300:
        return OutcomeClass.OK
    if status_code in (408, 429):
        return OutcomeClass.RATE_LIMIT
    if status_code in (401, 402, 403):
        return OutcomeClass.AUTH_REQUIRED
    if status_code >= 500:
        return OutcomeClass.SERVER_ERROR
    # Other 4xx, and 1xx/3xx that a JSON job API has no business sending to a client that does not
    # follow redirects: retrying cannot help.
    return OutcomeClass.PERMANENT


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date (RFC 9110 §10.2.3); None if unusable."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def short(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """One line, bounded: messages land in history, status output and logs."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def api_message(body: bytes) -> str:
    """The API's own words about an error: a JSON ``error``/``message``/``detail`` field, else the text."""
    text = body.decode("utf-8", errors="replace")
    try:
        doc = json.loads(text)
    except ValueError:
        return short(text)
    if isinstance(doc, dict):
        for key in ("error", "message", "detail", "description", "title"):
            value = doc.get(key)
            if isinstance(value, dict):
                value = value.get("message", json.dumps(value))
            if value:
                return short(str(value))
    return short(text)


def error_outcome(status_code: int, headers: httpx.Headers, body: bytes) -> HttpOutcome:
    """Outcome of a non-2xx answer."""
    outcome = classify_status_code(status_code)
    retry_after = parse_retry_after(headers.get("retry-after")) if outcome is OutcomeClass.RATE_LIMIT else None
    message = api_message(body) or httpx.codes.get_reason_phrase(status_code)
    return HttpOutcome(outcome=outcome, http_status=status_code, message=message, retry_after_seconds=retry_after)


def exception_outcome(exc: Exception) -> HttpOutcome:
    """Outcome of a call that got no usable answer: all transient, most specific description first."""
    if isinstance(exc, httpx.TimeoutException):
        message = f"timed out ({type(exc).__name__})"
    elif isinstance(exc, httpx.ConnectError):
        message = f"cannot connect: {exc}" if str(exc) else "cannot connect"
    elif isinstance(exc, httpx.DecodingError):
        message = "malformed response: cannot decode the body"
    elif isinstance(exc, httpx.TransportError):
        message = f"connection failed ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})"
    elif isinstance(exc, BodyTooLarge):
        message = f"response body too large: {exc}"
    elif isinstance(exc, MalformedBody):
        message = f"malformed response: {exc}"
    elif isinstance(exc, TimeoutError):
        message = "response took too long to arrive"
    elif isinstance(exc, httpx.HTTPError):
        message = f"HTTP failure ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})"
    else:
        raise TypeError(f"not an HTTP failure: {exc!r}") from exc
    return HttpOutcome(outcome=OutcomeClass.TRANSIENT, message=short(message))
