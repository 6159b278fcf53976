"""The outcome classification: status codes, Retry-After, API messages and exceptions (pure functions)."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from activities import (
    HttpOutcome,
    OutcomeClass,
    classify_status_code,
    error_outcome,
    exception_outcome,
    parse_retry_after,
)
from activities._outcome import MAX_MESSAGE_CHARS, BodyTooLarge, MalformedBody, api_message

NOW = datetime(2025, 3, 14, 12, 0, 0, tzinfo=UTC)


def http_date(when: datetime) -> str:
    return email.utils.format_datetime(when, usegmt=True)


# -- classify_status_code ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status_code", "expected"),
    [
        (200, OutcomeClass.OK),
        (201, OutcomeClass.OK),
        (202, OutcomeClass.OK),
        (204, OutcomeClass.OK),
        (299, OutcomeClass.OK),
        (429, OutcomeClass.RATE_LIMIT),
        (408, OutcomeClass.RATE_LIMIT),
        (401, OutcomeClass.AUTH_REQUIRED),
        (402, OutcomeClass.AUTH_REQUIRED),
        (403, OutcomeClass.AUTH_REQUIRED),
        (400, OutcomeClass.PERMANENT),
        (404, OutcomeClass.PERMANENT),
        (409, OutcomeClass.PERMANENT),
        (410, OutcomeClass.PERMANENT),
        (422, OutcomeClass.PERMANENT),
        (418, OutcomeClass.PERMANENT),
        (500, OutcomeClass.SERVER_ERROR),
        (502, OutcomeClass.SERVER_ERROR),
        (503, OutcomeClass.SERVER_ERROR),
        (504, OutcomeClass.SERVER_ERROR),
        (599, OutcomeClass.SERVER_ERROR),
        (301, OutcomeClass.PERMANENT),
        (304, OutcomeClass.PERMANENT),
        (100, OutcomeClass.PERMANENT),
    ],
)
def test_classify_status_code(status_code: int, expected: OutcomeClass) -> None:
    assert classify_status_code(status_code) is expected


# -- parse_retry_after ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("  7 ", 7.0),
        ("-3", 0.0),  # a negative wait is no wait
        (http_date(NOW + timedelta(seconds=30)), 30.0),
        (http_date(NOW - timedelta(hours=1)), 0.0),  # a date in the past: go now
        ("soon", None),
        ("Mon, 99 Foo 2025", None),
        ("nan", None),
        ("inf", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_date_without_zone_is_read_as_utc() -> None:
    # "-0000" means "UTC, zone unknown": parsedate_to_datetime gives a naive datetime.
    assert parse_retry_after("Fri, 14 Mar 2025 12:01:00 -0000", now=NOW) == 60.0


# -- api_message ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error": "bad input"}', "bad input"),
        (b'{"message": "quota exceeded"}', "quota exceeded"),
        (b'{"detail": "not found"}', "not found"),
        (b'{"title": "Conflict"}', "Conflict"),
        (b'{"error": {"message": "nested words", "code": 7}}', "nested words"),
        (b'{"error": {"code": 7}}', '{"code": 7}'),
        (b'{"error": "", "message": "second choice"}', "second choice"),
        (b'{"error": "first", "message": "second"}', "first"),
        (b'{"other": 1}', '{"other": 1}'),
        (b"[1, 2]", "[1, 2]"),
        (b"<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
        (b"line one\n  line two\r\n\tthree", "line one line two three"),
        (b'{"error": "multi\\nline\\n message"}', "multi line message"),
        (b"", ""),
        (b"\xff\xfe broken utf-8", "\ufffd\ufffd broken utf-8"),
    ],
)
def test_api_message(body: bytes, expected: str) -> None:
    assert api_message(body) == expected


@pytest.mark.parametrize("body", [b"x" * 5000, b'{"error": "' + b"y" * 5000 + b'"}'])
def test_api_message_truncates_long_text(body: bytes) -> None:
    message = api_message(body)
    assert len(message) <= MAX_MESSAGE_CHARS
    assert len(message) > MAX_MESSAGE_CHARS - 5  # truncated, not dropped
    assert message.endswith("…")


# -- error_outcome -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status_code", "retry_after", "expected_class", "expected_retry_after"),
    [
        (429, "12", OutcomeClass.RATE_LIMIT, 12.0),
        (408, "3", OutcomeClass.RATE_LIMIT, 3.0),
        (429, None, OutcomeClass.RATE_LIMIT, None),
        (429, "whenever", OutcomeClass.RATE_LIMIT, None),
        # Only a rate limit honours Retry-After; a 503 waits the poll interval like any server error.
        (503, "12", OutcomeClass.SERVER_ERROR, None),
        (401, "12", OutcomeClass.AUTH_REQUIRED, None),
        (400, "12", OutcomeClass.PERMANENT, None),
    ],
)
def test_error_outcome_retry_after_only_for_rate_limits(
    status_code: int, retry_after: str | None, expected_class: OutcomeClass, expected_retry_after: float | None
) -> None:
    headers = httpx.Headers({"Retry-After": retry_after} if retry_after is not None else {})
    outcome = error_outcome(status_code, headers, b'{"error": "nope"}')
    assert outcome.outcome is expected_class
    assert outcome.http_status == status_code
    assert outcome.retry_after_seconds == expected_retry_after
    assert outcome.message == "nope"


@pytest.mark.parametrize(("status_code", "reason"), [(503, "Service Unavailable"), (404, "Not Found")])
def test_error_outcome_without_body_uses_the_reason_phrase(status_code: int, reason: str) -> None:
    assert error_outcome(status_code, httpx.Headers(), b"").message == reason


# -- exception_outcome ---------------------------------------------------------------------------------------

_REQUEST = httpx.Request("GET", "http://api.test/jobs/1")


@pytest.mark.parametrize(
    ("exc", "message_start"),
    [
        (httpx.ReadTimeout("read", request=_REQUEST), "timed out (ReadTimeout)"),
        (httpx.ConnectTimeout("connect", request=_REQUEST), "timed out (ConnectTimeout)"),
        (httpx.PoolTimeout("pool", request=_REQUEST), "timed out (PoolTimeout)"),
        (httpx.ConnectError("[Errno 111] Connection refused", request=_REQUEST), "cannot connect: [Errno 111]"),
        (httpx.ConnectError("", request=_REQUEST), "cannot connect"),
        (httpx.RemoteProtocolError("Server disconnected", request=_REQUEST), "connection failed (RemoteProtocolError"),
        (httpx.ReadError("reset by peer", request=_REQUEST), "connection failed (ReadError: reset by peer)"),
        (httpx.ReadError("", request=_REQUEST), "connection failed (ReadError)"),
        (BodyTooLarge("over 10 bytes"), "response body too large: over 10 bytes"),
        (MalformedBody("not JSON"), "malformed response: not JSON"),
        (TimeoutError(), "response took too long to arrive"),
    ],
)
def test_exception_outcome_is_transient(exc: Exception, message_start: str) -> None:
    outcome = exception_outcome(exc)
    assert outcome.outcome is OutcomeClass.TRANSIENT
    assert outcome.message.startswith(message_start)
    assert outcome.http_status is None
    assert outcome.retry_after_seconds is None


def test_exception_outcome_message_is_one_bounded_line() -> None:
    outcome = exception_outcome(httpx.ReadError("first line\nsecond line " + "z" * 1000, request=_REQUEST))
    assert "\n" not in outcome.message
    assert len(outcome.message) <= MAX_MESSAGE_CHARS


@pytest.mark.parametrize("exc", [ValueError("not http"), KeyError("k"), RuntimeError("boom")])
def test_exception_outcome_refuses_non_http_failures(exc: Exception) -> None:
    with pytest.raises(TypeError, match="not an HTTP failure"):
        exception_outcome(exc)


def test_http_outcome_round_trips_as_json() -> None:
    outcome = HttpOutcome(outcome=OutcomeClass.OK, http_status=200, job_id="j1", progress=12.5, result={"a": [1]})
    assert HttpOutcome.model_validate_json(outcome.model_dump_json()) == outcome
