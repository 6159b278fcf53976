"""The HTTP activities, called directly: an ``httpx.MockTransport`` for the request/answer logic, the real demo
service on loopback for what only a socket shows (resets, silent and trickling servers, refused connections).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import (
    CancelJobInput,
    FetchResultInput,
    HttpOutcome,
    JobApiActivities,
    OutcomeClass,
    PollJobInput,
    ResolveSpecInput,
    SubmitJobInput,
)
from demo_service import DemoService
from jobspec import ApiSpec, HttpTimeouts, JobPhase, load_spec, resolve_spec
from tests.conftest import DEMO_TOKEN, demo_spec

BASE_URL = "http://api.test/v1"
SPEC = resolve_spec(load_spec("demo"), {"base_url": BASE_URL}, environ={})

Handler = Callable[[httpx.Request], httpx.Response]


def variant(**sections: Any) -> ApiSpec:
    """The mock spec with some sections changed (dicts are merged into the section), validated like a file."""
    data = SPEC.model_dump(mode="json")
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(name), dict):
            data[name] = {**data[name], **value}
        else:
            data[name] = value
    return ApiSpec.model_validate(data)


class FakeApi:
    """A MockTransport handler that records every request and answers with ``reply``."""

    def __init__(self, acts_environ: dict[str, str]) -> None:
        self.requests: list[httpx.Request] = []
        self.reply: Handler = lambda _request: httpx.Response(200, json={})
        self.environ = acts_environ
        self.acts: JobApiActivities

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.reply(request)

    @property
    def only_request(self) -> httpx.Request:
        assert len(self.requests) == 1, self.requests
        return self.requests[0]


@pytest.fixture
async def api(worker_environ: dict[str, str]) -> AsyncIterator[FakeApi]:
    fake = FakeApi(worker_environ)
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handle)) as client:
        fake.acts = JobApiActivities(client, environ=worker_environ)
        yield fake


async def poll(api: FakeApi, spec: ApiSpec = SPEC, job_id: str = "job_1") -> HttpOutcome:
    return await api.acts.poll_job(PollJobInput(spec=spec, job_id=job_id))


async def submit(api: FakeApi, spec: ApiSpec = SPEC, job_input: Any = None, key: str = "wf-1/submit") -> HttpOutcome:
    return await api.acts.submit_job(SubmitJobInput(spec=spec, job_input=job_input, idempotency_key=key))


# -- submit --------------------------------------------------------------------------------------------------


async def test_submit_sends_input_idempotency_key_and_bearer_token(api: FakeApi) -> None:
    api.reply = lambda _r: httpx.Response(202, json={"id": "job_42", "status": "queued"})
    outcome = await submit(api, job_input={"items": [1, 2], "name": "x"}, key="wf-abc:submit")

    assert outcome == HttpOutcome(outcome=OutcomeClass.OK, http_status=202, job_id="job_42")
    request = api.only_request
    assert request.method == "POST"
    assert str(request.url) == f"{BASE_URL}/jobs"
    assert request.headers["Idempotency-Key"] == "wf-abc:submit"
    assert request.headers["Authorization"] == f"Bearer {DEMO_TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {"items": [1, 2], "name": "x"}


async def test_submit_body_template_places_input_and_extra_headers(api: FakeApi) -> None:
    spec = variant(
        submit={
            "body": {"payload": "$input", "kind": "demo", "all": ["$input", 3]},
            "headers": {"X-Client": "longjobs"},
            "idempotency_header": "X-Request-Id",
        }
    )
    api.reply = lambda _r: httpx.Response(201, json={"id": "j"})
    await submit(api, spec, job_input={"n": 1}, key="k-1")

    request = api.only_request
    assert json.loads(request.content) == {"payload": {"n": 1}, "kind": "demo", "all": [{"n": 1}, 3]}
    assert request.headers["X-Client"] == "longjobs"
    assert request.headers["X-Request-Id"] == "k-1"
    assert "Idempotency-Key" not in request.headers


async def test_submit_without_idempotency_header_sends_none(api: FakeApi) -> None:
    api.reply = lambda _r: httpx.Response(201, json={"id": "j"})
    await submit(api, variant(submit={"idempotency_header": None}), job_input={"n": 1}, key="k-1")
    assert "k-1" not in api.only_request.headers.values()


async def test_submit_without_input_sends_no_body(api: FakeApi) -> None:
    api.reply = lambda _r: httpx.Response(201, json={"id": "j"})
    await submit(api, job_input=None)
    assert api.only_request.content == b""


@pytest.mark.parametrize(
    ("job_id_path", "body", "expected"),
    [
        ("id", {"id": "job_1"}, "job_1"),
        ("$.data.job.id", {"data": {"job": {"id": "deep"}}}, "deep"),
        ("jobs[0].name", {"jobs": [{"name": "first"}, {"name": "second"}]}, "first"),
        ("id", {"id": 12345}, "12345"),  # numeric ids become strings
    ],
)
async def test_submit_reads_job_id_from_body_path(api: FakeApi, job_id_path: str, body: Any, expected: str) -> None:
    api.reply = lambda _r: httpx.Response(202, json=body)
    outcome = await submit(api, variant(submit={"job_id_path": job_id_path}))
    assert outcome.outcome is OutcomeClass.OK
    assert outcome.job_id == expected


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/v1/jobs/loc-7", "loc-7"),
        ("http://api.test/v1/jobs/loc-8/", "loc-8"),  # trailing slash ignored
    ],
)
async def test_submit_reads_job_id_from_location(api: FakeApi, location: str, expected: str) -> None:
    spec = variant(submit={"job_id_path": None, "job_id_from_location": True})
    api.reply = lambda _r: httpx.Response(201, headers={"Location": location})
    outcome = await submit(api, spec)
    assert outcome.outcome is OutcomeClass.OK
    assert outcome.job_id == expected


async def test_submit_falls_back_to_location_when_body_has_no_id(api: FakeApi) -> None:
    spec = variant(submit={"job_id_path": "id", "job_id_from_location": True})
    api.reply = lambda _r: httpx.Response(201, json={"accepted": True}, headers={"Location": "/v1/jobs/from-loc"})
    assert (await submit(api, spec)).job_id == "from-loc"


async def test_submit_prefers_body_id_over_location(api: FakeApi) -> None:
    spec = variant(submit={"job_id_path": "id", "job_id_from_location": True})
    api.reply = lambda _r: httpx.Response(201, json={"id": "from-body"}, headers={"Location": "/v1/jobs/from-loc"})
    assert (await submit(api, spec)).job_id == "from-body"


async def test_submit_location_fallback_survives_a_non_json_body(api: FakeApi) -> None:
    spec = variant(submit={"job_id_path": "id", "job_id_from_location": True})
    api.reply = lambda _r: httpx.Response(201, text="Created", headers={"Location": "/v1/jobs/loc-9"})
    outcome = await submit(api, spec)
    assert outcome.outcome is OutcomeClass.OK
    assert outcome.job_id == "loc-9"


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(202, json={"status": "queued"}),
        httpx.Response(202, json={"id": ""}),
        httpx.Response(202, json={"id": None}),
        httpx.Response(202, json={"id": {"nested": "x"}}),
        httpx.Response(202, json={"id": ["x"]}),
        httpx.Response(202, content=b""),
        httpx.Response(202, json={"status": "queued"}, headers={"Location": "/v1/jobs/ignored"}),
    ],
)
async def test_submit_without_usable_job_id_is_transient_malformed(api: FakeApi, reply: httpx.Response) -> None:
    api.reply = lambda _r: reply
    outcome = await submit(api)
    assert outcome.outcome is OutcomeClass.TRANSIENT
    assert outcome.message.startswith("malformed response:")
    assert "without a job id at 'id'" in outcome.message
    assert outcome.job_id is None


async def test_submit_location_spec_without_location_names_the_header(api: FakeApi) -> None:
    spec = variant(submit={"job_id_path": None, "job_id_from_location": True})
    api.reply = lambda _r: httpx.Response(201)
    outcome = await submit(api, spec)
    assert outcome.outcome is OutcomeClass.TRANSIENT
    assert "the Location header" in outcome.message


# -- poll ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "phase"),
    [
        ("queued", JobPhase.PENDING),
        ("running", JobPhase.RUNNING),
        ("succeeded", JobPhase.SUCCEEDED),
        ("failed", JobPhase.FAILED),
        ("cancelled", JobPhase.CANCELLED),
    ],
)
async def test_poll_maps_status_words(api: FakeApi, word: str, phase: JobPhase) -> None:
    api.reply = lambda _r: httpx.Response(200, json={"id": "job_1", "status": word})
    outcome = await poll(api)
    assert outcome.outcome is OutcomeClass.OK
    assert outcome.phase is phase
    assert outcome.status_word == word
    assert outcome.warning is None
    request = api.only_request
    assert request.method == "GET"
    assert str(request.url) == f"{BASE_URL}/jobs/job_1"
    assert request.headers["Authorization"] == f"Bearer {DEMO_TOKEN}"
    assert "Idempotency-Key" not in request.headers


async def test_poll_uses_the_specs_own_words_and_paths(api: FakeApi) -> None:
    spec = variant(
        status={
            "method": "POST",
            "path": "/status/{job_id}/info",
            "status_path": "$.job.state",
            "states": {"DONE": "succeeded", "WORKING": "running", "true": "failed"},
            "progress_path": "job.pct",
            "result_path": "job.output",
        }
    )
    api.reply = lambda _r: httpx.Response(200, json={"job": {"state": "DONE", "pct": 100, "output": [1, 2]}})
    outcome = await poll(api, spec, job_id="abc")
    assert (outcome.phase, outcome.progress, outcome.result) == (JobPhase.SUCCEEDED, 100.0, [1, 2])
    assert api.only_request.method == "POST"
    assert str(api.only_request.url) == f"{BASE_URL}/status/abc/info"


async def test_poll_boolean_status_word_is_lowercased(api: FakeApi) -> None:
    spec = variant(status={"status_path": "done", "states": {"true": "succeeded", "false": "running"}})
    api.reply = lambda _r: httpx.Response(200, json={"done": False})
    outcome = await poll(api, spec)
    assert (outcome.phase, outcome.status_word) == (JobPhase.RUNNING, "false")


@pytest.mark.parametrize(
    ("scale", "raw", "expected"),
    [
        (1, 0.5, 50.0),
        (1, 1, 100.0),
        (100, 42, 42.0),
        (100, 12.5, 12.5),
        (1000, 250, 25.0),
        (100, 150, 100.0),  # clamped
        (100, -5, 0.0),  # clamped
        (100, "42", None),  # not a number: no progress rather than a guess
        (100, True, None),
        (100, None, None),
    ],
)
async def test_poll_progress_is_scaled_to_percent(api: FakeApi, scale: float, raw: Any, expected: float | None) -> None:
    spec = variant(status={"progress_scale": scale})
    api.reply = lambda _r: httpx.Response(200, json={"status": "running", "progress": raw})
    assert (await poll(api, spec)).progress == expected


async def test_poll_without_progress_path_reports_none(api: FakeApi) -> None:
    api.reply = lambda _r: httpx.Response(200, json={"status": "running", "progress": 50})
    assert (await poll(api, variant(status={"progress_path": None}))).progress is None


async def test_poll_success_carries_inline_result(api: FakeApi) -> None:
    api.reply = lambda _r: httpx.Response(
        200, json={"status": "succeeded", "progress": 100, "result": {"output": "processed 2 items"}}
    )
    outcome = await poll(api)
    assert outcome.phase is JobPhase.SUCCEEDED
    assert outcome.result == {"output": "processed 2 items"}
    assert outcome.job_error is None


async def test_poll_result_is_not_inline_when_spec_has_a_result_section(api: FakeApi) -> None:
    spec = variant(result={"path": "/jobs/{job_id}/result"})
    api.reply = lambda _r: httpx.Response(200, json={"status": "succeeded", "result": {"output": "x"}})
    outcome = await poll(api, spec)
    assert outcome.phase is JobPhase.SUCCEEDED
    assert outcome.result is None


async def test_poll_result_only_on_success(api: FakeApi) -> None:
    api.reply = lambda _r: httpx.Response(200, json={"status": "running", "result": {"partial": True}})
    assert (await poll(api)).result is None


@pytest.mark.parametrize(
    ("word", "error", "expected"),
    [
        ("failed", "disk full", "disk full"),
        ("failed", {"code": 3, "why": "oom"}, '{"code": 3, "why": "oom"}'),
        ("failed", "line1\nline2", "line1 line2"),
        ("cancelled", "by operator", "by operator"),
        ("failed", None, None),
        ("running", "ignored while running", None),
    ],
)
async def test_poll_job_error_on_failure(api: FakeApi, word: str, error: Any, expected: str | None) -> None:
    api.reply = lambda _r: httpx.Response(200, json={"status": word, "error": error})
    outcome = await poll(api)
    assert outcome.outcome is OutcomeClass.OK  # the call worked; the job did not
    assert outcome.job_error == expected


async def test_poll_unknown_status_word_counts_as_running_with_warning(
    api: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    api.reply = lambda _r: httpx.Response(200, json={"status": "defragmenting", "progress": 10})
    with caplog.at_level(logging.WARNING):
        outcome = await ActivityEnvironment().run(api.acts.poll_job, PollJobInput(spec=SPEC, job_id="job_1"))
    assert outcome.outcome is OutcomeClass.OK
    assert outcome.phase is JobPhase.RUNNING
    assert outcome.status_word == "defragmenting"
    assert outcome.progress == 10.0
    assert outcome.warning is not None and "'defragmenting'" in outcome.warning and "running" in outcome.warning
    assert any("defragmenting" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


@pytest.mark.parametrize(
    ("reply", "message_part"),
    [
        (httpx.Response(200, text="<html>maintenance</html>"), "not JSON"),
        (httpx.Response(200, content=b""), "not JSON"),
        (httpx.Response(200, json={"id": "job_1"}), "no status word at 'status'"),
        (httpx.Response(200, json={"status": None}), "no status word"),
        (httpx.Response(200, json={"status": {"word": "running"}}), "no status word"),
        (httpx.Response(200, json=["running"]), "no status word"),
    ],
)
async def test_poll_unusable_200_is_transient(api: FakeApi, reply: httpx.Response, message_part: str) -> None:
    api.reply = lambda _r: reply
    outcome = await poll(api)
    assert outcome.outcome is OutcomeClass.TRANSIENT
    assert outcome.message.startswith("malformed response:")
    assert message_part in outcome.message
    assert outcome.phase is None


# -- HTTP errors ---------------------------------------------------------------------------------------------


async def test_rate_limit_carries_retry_after(api: FakeApi) -> None:
    api.reply = lambda _r: httpx.Response(429, json={"error": "slow down"}, headers={"Retry-After": "17"})
    outcome = await poll(api)
    assert outcome == HttpOutcome(
        outcome=OutcomeClass.RATE_LIMIT, http_status=429, message="slow down", retry_after_seconds=17.0
    )


@pytest.mark.parametrize(
    ("status_code", "expected"),
    [
        (401, OutcomeClass.AUTH_REQUIRED),
        (403, OutcomeClass.AUTH_REQUIRED),
        (404, OutcomeClass.PERMANENT),
        (422, OutcomeClass.PERMANENT),
        (500, OutcomeClass.SERVER_ERROR),
        (503, OutcomeClass.SERVER_ERROR),
    ],
)
async def test_error_status_is_classified(api: FakeApi, status_code: int, expected: OutcomeClass) -> None:
    api.reply = lambda _r: httpx.Response(status_code, json={"error": "the api says no"})
    outcome = await submit(api, job_input={"a": 1})
    assert outcome.outcome is expected
    assert outcome.http_status == status_code
    assert outcome.message == "the api says no"
    assert outcome.job_id is None


async def test_secret_echoed_in_error_body_is_masked(api: FakeApi) -> None:
    api.reply = lambda r: httpx.Response(401, json={"error": f"token {r.headers['Authorization']} is revoked"})
    outcome = await poll(api)
    assert outcome.outcome is OutcomeClass.AUTH_REQUIRED
    assert outcome.message == "token Bearer *** is revoked"
    assert DEMO_TOKEN not in outcome.model_dump_json()


async def test_secret_echoed_in_job_error_is_masked(api: FakeApi) -> None:
    api.reply = lambda _r: httpx.Response(200, json={"status": "failed", "error": f"backend rejected {DEMO_TOKEN}"})
    outcome = await poll(api)
    assert outcome.job_error == "backend rejected ***"
    assert DEMO_TOKEN not in outcome.model_dump_json()


async def test_secret_cut_by_truncation_does_not_leak(api: FakeApi) -> None:
    # The token starts at char 290 of the message, so the 300-char cut splits it.
    api.reply = lambda _r: httpx.Response(401, json={"error": "x" * 289 + " " + DEMO_TOKEN})
    outcome = await poll(api)
    assert DEMO_TOKEN[:6] not in outcome.message


# -- credentials ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "message_part"),
    [
        ({}, "$DEMO_API_TOKEN_FILE or $DEMO_API_TOKEN"),
        ({"DEMO_API_TOKEN": "   "}, "no credential found"),
        ({"DEMO_API_TOKEN_FILE": "/nonexistent/dir/token"}, "cannot read credential file /nonexistent/dir/token"),
    ],
)
async def test_no_credential_is_auth_required_without_a_request(
    environ: dict[str, str], message_part: str, api: FakeApi
) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(api.handle)) as client:
        acts = JobApiActivities(client, environ=environ)
        for outcome in [
            await acts.submit_job(SubmitJobInput(spec=SPEC, job_input={"a": 1}, idempotency_key="k")),
            await acts.poll_job(PollJobInput(spec=SPEC, job_id="job_1")),
            await acts.cancel_job(CancelJobInput(spec=SPEC, job_id="job_1")),
        ]:
            assert outcome.outcome is OutcomeClass.AUTH_REQUIRED
            assert message_part in outcome.message
            assert outcome.http_status is None
    assert api.requests == []


async def test_empty_credential_file_is_auth_required(api: FakeApi, token_file: Path) -> None:
    token_file.write_text("\n")
    outcome = await poll(api)
    assert outcome.outcome is OutcomeClass.AUTH_REQUIRED
    assert "is empty" in outcome.message
    assert api.requests == []


async def test_credential_file_is_reread_on_every_call(api: FakeApi, token_file: Path) -> None:
    api.reply = lambda _r: httpx.Response(200, json={"status": "running"})
    await poll(api)
    token_file.write_text("rotated-token\n")
    await poll(api)
    assert [r.headers["Authorization"] for r in api.requests] == [f"Bearer {DEMO_TOKEN}", "Bearer rotated-token"]


async def test_credential_file_wins_over_env_token(token_file: Path) -> None:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(200, json={"status": "running"})

    environ = {"DEMO_API_TOKEN_FILE": str(token_file), "DEMO_API_TOKEN": "env-token"}
    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        await JobApiActivities(client, environ=environ).poll_job(PollJobInput(spec=SPEC, job_id="j"))
        await JobApiActivities(client, environ={"DEMO_API_TOKEN": "env-token"}).poll_job(
            PollJobInput(spec=SPEC, job_id="j")
        )
    assert seen == [f"Bearer {DEMO_TOKEN}", "Bearer env-token"]


@pytest.mark.parametrize(
    ("auth", "header", "value"),
    [
        ({"type": "header", "header": "X-Api-Key", "secret_env": "KEY"}, "X-Api-Key", "s3cret"),
        ({"type": "bearer", "secret_env": "KEY"}, "Authorization", "Bearer s3cret"),
        (
            {"type": "basic", "secret_env": "KEY"},
            "Authorization",
            "Basic " + base64.b64encode(b"s3cret").decode(),
        ),
    ],
)
async def test_auth_types_set_the_right_header(auth: dict[str, Any], header: str, value: str) -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "running"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        acts = JobApiActivities(client, environ={"KEY": "s3cret"})
        await acts.poll_job(PollJobInput(spec=variant(auth=auth), job_id="j"))
    assert seen[0].headers[header] == value


async def test_auth_none_sends_no_credential_and_needs_none() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "running"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        outcome = await JobApiActivities(client, environ={}).poll_job(
            PollJobInput(spec=variant(auth={"type": "none"}), job_id="j")
        )
    assert outcome.outcome is OutcomeClass.OK
    assert "Authorization" not in seen[0].headers


# -- body limits and broken bodies ---------------------------------------------------------------------------


async def test_declared_body_over_limit_is_transient_too_large(api: FakeApi) -> None:
    spec = variant(timeouts={"max_response_bytes": 100})
    api.reply = lambda _r: httpx.Response(200, json={"status": "running", "pad": "x" * 200})
    outcome = await poll(api, spec)
    assert outcome.outcome is OutcomeClass.TRANSIENT
    assert outcome.message.startswith("response body too large")
    assert "limit 100" in outcome.message


async def test_streamed_body_over_limit_is_transient_too_large(api: FakeApi) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 30

    spec = variant(timeouts={"max_response_bytes": 100})
    api.reply = lambda _r: httpx.Response(200, content=chunks())  # chunked: no Content-Length to trust
    outcome = await poll(api, spec)
    assert outcome.outcome is OutcomeClass.TRANSIENT
    assert outcome.message == "response body too large: over 100 bytes"


async def test_body_at_the_limit_is_accepted(api: FakeApi) -> None:
    body = json.dumps({"status": "running"}).encode()
    api.reply = lambda _r: httpx.Response(200, content=body)
    outcome = await poll(api, variant(timeouts={"max_response_bytes": len(body)}))
    assert outcome.outcome is OutcomeClass.OK


async def test_gzip_body_is_decoded(api: FakeApi) -> None:
    body = gzip.compress(json.dumps({"status": "succeeded", "result": 7}).encode())
    api.reply = lambda _r: httpx.Response(200, content=body, headers={"Content-Encoding": "gzip"})
    assert (await poll(api)).result == 7


async def test_corrupt_compressed_body_is_transient(api: FakeApi) -> None:
    api.reply = lambda _r: httpx.Response(200, content=b"not gzip at all", headers={"Content-Encoding": "gzip"})
    outcome = await poll(api)
    assert outcome.outcome is OutcomeClass.TRANSIENT


# -- cancel, fetch_result, resolve_spec, URLs ----------------------------------------------------------------


async def test_cancel_without_cancel_section_is_ok_without_request(api: FakeApi) -> None:
    outcome = await api.acts.cancel_job(CancelJobInput(spec=variant(cancel=None), job_id="job_1"))
    assert outcome.outcome is OutcomeClass.OK
    assert "cannot cancel" in outcome.message
    assert api.requests == []


async def test_cancel_calls_the_cancel_url(api: FakeApi) -> None:
    api.reply = lambda _r: httpx.Response(200, json={"status": "cancelled"})
    outcome = await api.acts.cancel_job(CancelJobInput(spec=SPEC, job_id="job_1"))
    assert (outcome.outcome, outcome.http_status) == (OutcomeClass.OK, 200)
    request = api.only_request
    assert (request.method, str(request.url)) == ("POST", f"{BASE_URL}/jobs/job_1/cancel")
    assert request.headers["Authorization"] == f"Bearer {DEMO_TOKEN}"


async def test_cancel_of_an_ended_job_is_permanent(api: FakeApi) -> None:
    api.reply = lambda _r: httpx.Response(409, json={"error": "job already succeeded"})
    outcome = await api.acts.cancel_job(CancelJobInput(spec=SPEC, job_id="job_1"))
    assert (outcome.outcome, outcome.message) == (OutcomeClass.PERMANENT, "job already succeeded")


@pytest.mark.parametrize(
    ("result_path", "document", "expected"),
    [
        ("data.output", {"data": {"output": [1, 2, 3]}}, [1, 2, 3]),
        (None, {"data": {"output": 1}}, {"data": {"output": 1}}),
        ("data.missing", {"data": {}}, None),
    ],
)
async def test_fetch_result_from_its_own_url(
    api: FakeApi, result_path: str | None, document: Any, expected: Any
) -> None:
    spec = variant(result={"method": "GET", "path": "/jobs/{job_id}/result", "result_path": result_path})
    api.reply = lambda _r: httpx.Response(200, json=document)
    outcome = await api.acts.fetch_result(FetchResultInput(spec=spec, job_id="job_9"))
    assert outcome.outcome is OutcomeClass.OK
    assert outcome.result == expected
    assert str(api.only_request.url) == f"{BASE_URL}/jobs/job_9/result"


async def test_fetch_result_non_json_is_transient(api: FakeApi) -> None:
    spec = variant(result={"path": "/jobs/{job_id}/result"})
    api.reply = lambda _r: httpx.Response(200, text="plain text")
    outcome = await api.acts.fetch_result(FetchResultInput(spec=spec, job_id="job_9"))
    assert outcome.outcome is OutcomeClass.TRANSIENT


async def test_fetch_result_without_result_section_is_invalid_spec(api: FakeApi) -> None:
    with pytest.raises(ApplicationError) as info:
        await api.acts.fetch_result(FetchResultInput(spec=SPEC, job_id="job_9"))
    assert info.value.type == "InvalidSpec"
    assert info.value.non_retryable
    assert api.requests == []


@pytest.mark.parametrize(
    ("job_id", "raw_path"),
    [
        ("a/b", b"/v1/jobs/a%2Fb"),
        ("../admin", b"/v1/jobs/..%2Fadmin"),
        ("x y?z#w", b"/v1/jobs/x%20y%3Fz%23w"),
        ("plain-id_1.2", b"/v1/jobs/plain-id_1.2"),
    ],
)
async def test_job_id_is_url_quoted_in_the_path(api: FakeApi, job_id: str, raw_path: bytes) -> None:
    api.reply = lambda _r: httpx.Response(200, json={"status": "running"})
    await poll(api, job_id=job_id)
    assert api.only_request.url.raw_path == raw_path


async def test_base_url_trailing_slash_is_not_doubled(api: FakeApi) -> None:
    api.reply = lambda _r: httpx.Response(200, json={"status": "running"})
    await poll(api, variant(base_url=BASE_URL + "/"))
    assert str(api.only_request.url) == f"{BASE_URL}/jobs/job_1"


async def test_resolve_spec_activity(api: FakeApi) -> None:
    spec = await api.acts.resolve_spec(ResolveSpecInput(api="demo", variables={"base_url": "http://h:1"}))
    assert spec.base_url == "http://h:1"
    assert spec.variables == {}


async def test_resolve_spec_activity_reads_the_workers_environment() -> None:
    async with httpx.AsyncClient() as client:
        acts = JobApiActivities(client, environ={"DEMO_API_URL": "http://from-env:9"})
        spec = await acts.resolve_spec(ResolveSpecInput(api="demo"))
    assert spec.base_url == "http://from-env:9"


@pytest.mark.parametrize("api_name", ["no-such-api", "demo"])
async def test_resolve_spec_activity_errors_are_non_retryable(api: FakeApi, api_name: str) -> None:
    variables = {"nope": "1"} if api_name == "demo" else {}
    with pytest.raises(ApplicationError) as info:
        await api.acts.resolve_spec(ResolveSpecInput(api=api_name, variables=variables))
    assert info.value.type == "InvalidSpec"
    assert info.value.non_retryable


# -- against the real demo service ---------------------------------------------------------------------------

ADMIN = {"X-Admin-Key": "test-admin"}
FAST = HttpTimeouts(connect_seconds=0.5, read_seconds=0.5)


async def add_fault(http: httpx.AsyncClient, demo: DemoService, **fault: Any) -> None:
    response = await http.post(f"{demo.url}/admin/faults", json=fault, headers=ADMIN)
    assert response.status_code == 200, response.text


def fast_spec(demo: DemoService) -> ApiSpec:
    return demo_spec(demo).model_copy(update={"timeouts": FAST})


@pytest.fixture
def real(http: httpx.AsyncClient, worker_environ: dict[str, str]) -> JobApiActivities:
    return JobApiActivities(http, environ=worker_environ)


async def test_real_submit_and_poll_agree_with_the_demo_spec(demo: DemoService, real: JobApiActivities) -> None:
    spec = demo_spec(demo)
    submitted = await real.submit_job(
        SubmitJobInput(spec=spec, job_input={"work_polls": 1, "a": 1}, idempotency_key="k")
    )
    assert (submitted.outcome, submitted.http_status) == (OutcomeClass.OK, 202)
    assert submitted.job_id is not None
    again = await real.submit_job(SubmitJobInput(spec=spec, job_input={"work_polls": 1, "a": 1}, idempotency_key="k"))
    assert again.job_id == submitted.job_id
    assert demo.state.jobs_created == 1

    polled = await real.poll_job(PollJobInput(spec=spec, job_id=submitted.job_id))
    assert (polled.phase, polled.progress) == (JobPhase.SUCCEEDED, 100.0)
    assert polled.result["input"] == {"a": 1}


async def test_real_wrong_token_is_auth_required(demo: DemoService, real: JobApiActivities) -> None:
    demo.state.token = "another-token"
    outcome = await real.poll_job(PollJobInput(spec=demo_spec(demo), job_id="job_x"))
    assert (outcome.outcome, outcome.http_status) == (OutcomeClass.AUTH_REQUIRED, 401)


async def test_real_connection_reset_is_transient(
    demo: DemoService, http: httpx.AsyncClient, real: JobApiActivities
) -> None:
    await add_fault(http, demo, match="submit", reset=True)
    outcome = await real.submit_job(SubmitJobInput(spec=fast_spec(demo), job_input={}, idempotency_key="k"))
    assert outcome.outcome is OutcomeClass.TRANSIENT
    assert outcome.message.startswith("connection failed")
    assert demo.state.jobs_created == 0


async def test_real_silent_server_times_out(demo: DemoService, http: httpx.AsyncClient, real: JobApiActivities) -> None:
    await add_fault(http, demo, match="poll", status=200, delay_seconds=2)
    outcome = await real.poll_job(PollJobInput(spec=fast_spec(demo), job_id="job_x"))
    assert outcome.outcome is OutcomeClass.TRANSIENT
    assert outcome.message.startswith("timed out")


async def test_real_trickling_body_hits_the_whole_call_bound(
    demo: DemoService, http: httpx.AsyncClient, real: JobApiActivities
) -> None:
    # Each chunk arrives well within the 0.5 s read timeout; the whole body would take 3 s > 2 x 0.5 s.
    body = json.dumps({"id": "job_x", "status": "running", "progress": 5})
    await add_fault(http, demo, match="poll", status=200, body=body, trickle_seconds=3)
    outcome = await real.poll_job(PollJobInput(spec=fast_spec(demo), job_id="job_x"))
    assert outcome.outcome is OutcomeClass.TRANSIENT
    assert outcome.message == "response took too long to arrive"


async def test_real_malformed_json_200_is_transient(
    demo: DemoService, http: httpx.AsyncClient, real: JobApiActivities
) -> None:
    await add_fault(http, demo, match="poll", status=200, body='{"status": "runn')
    outcome = await real.poll_job(PollJobInput(spec=fast_spec(demo), job_id="job_x"))
    assert outcome.outcome is OutcomeClass.TRANSIENT
    assert "not JSON" in outcome.message


async def test_real_rate_limit_with_retry_after(
    demo: DemoService, http: httpx.AsyncClient, real: JobApiActivities
) -> None:
    await add_fault(http, demo, match="poll", status=429, retry_after="42")
    outcome = await real.poll_job(PollJobInput(spec=fast_spec(demo), job_id="job_x"))
    assert (outcome.outcome, outcome.retry_after_seconds, outcome.message) == (
        OutcomeClass.RATE_LIMIT,
        42.0,
        "injected fault",
    )


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that is bound (so nobody else takes it) but not listening: connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_real_nobody_listening_is_transient_cannot_connect(
    demo: DemoService, real: JobApiActivities, closed_port: int
) -> None:
    spec = fast_spec(demo).model_copy(update={"base_url": f"http://127.0.0.1:{closed_port}"})
    outcome = await real.poll_job(PollJobInput(spec=spec, job_id="job_x"))
    assert outcome.outcome is OutcomeClass.TRANSIENT
    assert outcome.message.startswith("cannot connect")


# -- requests in flight -----------------------------------------------------------------------------------


async def test_requests_beyond_the_in_flight_limit_wait_their_turn_and_all_succeed(
    worker_environ: dict[str, str],
) -> None:
    """Requests past ``max_requests_in_flight`` queue in the activities, not in httpx's pool, and none fails."""
    in_flight = {"GET": 0, "POST": 0}
    most = 0
    release = asyncio.Event()
    limit_reached = asyncio.Event()

    async def handle(request: httpx.Request) -> httpx.Response:
        nonlocal most
        in_flight[request.method] += 1
        most = max(most, sum(in_flight.values()))
        if most == 5:
            limit_reached.set()
        await release.wait()
        in_flight[request.method] -= 1
        if request.method == "POST":
            return httpx.Response(202, json={"id": "job_new", "status": "queued"})
        return httpx.Response(200, json={"id": request.url.path.rsplit("/", 1)[-1], "status": "running"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        acts = JobApiActivities(client, environ=worker_environ, max_requests_in_flight=5)
        calls = [acts.poll_job(PollJobInput(spec=SPEC, job_id=f"job_{i}")) for i in range(10)]
        calls += [acts.submit_job(SubmitJobInput(spec=SPEC, job_input={}, idempotency_key=f"k{i}")) for i in range(10)]
        tasks = [asyncio.create_task(call) for call in calls]
        await asyncio.wait_for(limit_reached.wait(), 10)
        await asyncio.sleep(0.05)  # time for any more requests to get through, if the limit let them
        assert sum(in_flight.values()) == 5 and in_flight["GET"] <= 4
        release.set()
        outcomes = await asyncio.gather(*tasks)
    assert most == 5
    assert [o.outcome for o in outcomes] == [OutcomeClass.OK] * 20


async def test_a_submit_gets_a_place_while_polls_fill_theirs(worker_environ: dict[str, str]) -> None:
    """Polls take at most four fifths of the places in flight: a submission never queues behind them."""
    release = asyncio.Event()
    polls_in = 0
    polls_full = asyncio.Event()

    async def handle(request: httpx.Request) -> httpx.Response:
        nonlocal polls_in
        if request.method == "POST":
            return httpx.Response(202, json={"id": "job_new", "status": "queued"})
        polls_in += 1
        if polls_in == 4:
            polls_full.set()
        await release.wait()
        return httpx.Response(200, json={"id": "job_1", "status": "running"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client:
        acts = JobApiActivities(client, environ=worker_environ, max_requests_in_flight=5)
        polls = [asyncio.create_task(acts.poll_job(PollJobInput(spec=SPEC, job_id="job_1"))) for _ in range(20)]
        await asyncio.wait_for(polls_full.wait(), 10)
        outcome = await asyncio.wait_for(
            acts.submit_job(SubmitJobInput(spec=SPEC, job_input={}, idempotency_key="k")), 10
        )
        assert outcome.job_id == "job_new"
        assert polls_in == 4  # the other 16 polls are still waiting for a poll's place
        release.set()
        assert all(o.outcome is OutcomeClass.OK for o in await asyncio.gather(*polls))
