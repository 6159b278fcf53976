"""The job-API fakes themselves, driven over real HTTP with httpx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.fakes import DEFAULT_TOKEN, FakeKind, RunningFake, running_fake

AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}


@dataclass(frozen=True)
class Api:
    """How to drive one shape generically: submit, find the status URL, read a status word, cancel."""

    submit_path: str
    body: Any
    fail_body: Any
    status_path: Callable[[httpx.Response], str]
    word: Callable[[dict[str, Any]], str]
    cancel: tuple[str, Callable[[str], str]]  # method, status path -> cancel path
    words: tuple[str, str, str, str]  # initial, succeeded, failed, cancelled
    submit_status: int = 200


def _google_word(op: dict[str, Any]) -> str:
    if not op["done"]:
        return "pending"
    return "ok" if "response" in op else f"error{op['error']['code']}"


APIS: dict[FakeKind, Api] = {
    "ogc-processes": Api(
        "/processes/echo/execution",
        {"inputs": {"x": 1}},
        {"inputs": {"fail": True}},
        lambda r: r.headers["Location"],
        lambda b: b["status"],
        ("DELETE", lambda p: p),
        ("accepted", "successful", "failed", "dismissed"),
        submit_status=201,
    ),
    "google-lro": Api(
        "/v1/projects/p1/locations/us/jobs",
        {"x": 1},
        {"fail": True},
        lambda r: f"/v1/{r.json()['name']}",
        _google_word,
        ("POST", lambda p: f"{p}:cancel"),
        ("pending", "ok", "error13", "error1"),
    ),
    "replicate": Api(
        "/v1/predictions",
        {"version": "v1", "input": {"x": 1}},
        {"version": "v1", "input": {"fail": True}},
        lambda r: r.json()["urls"]["get"],
        lambda b: b["status"],
        ("POST", lambda p: f"{p}/cancel"),
        ("starting", "succeeded", "failed", "canceled"),
        submit_status=201,
    ),
    "openai-batch": Api(
        "/v1/batches",
        {"input_file_id": "file-in", "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        {"input_file_id": "file-fail", "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        lambda r: f"/v1/batches/{r.json()['id']}",
        lambda b: b["status"],
        ("POST", lambda p: f"{p}/cancel"),
        ("validating", "completed", "failed", "cancelled"),
    ),
    "ray-jobs": Api(
        "/api/jobs/",
        {"entrypoint": "python job.py"},
        {"entrypoint": "python job.py && exit 1"},
        lambda r: f"/api/jobs/{r.json()['submission_id']}",
        lambda b: b["status"],
        ("POST", lambda p: f"{p}/stop"),
        ("PENDING", "SUCCEEDED", "FAILED", "STOPPED"),
    ),
}
KINDS = list(APIS)
UNAUTHORIZED: dict[FakeKind, Any] = {
    "ogc-processes": {"title": "Unauthorized"},
    "google-lro": {
        "error": {
            "code": 401,
            "message": "Request had invalid authentication credentials.",
            "status": "UNAUTHENTICATED",
        }
    },
    "replicate": {
        "title": "Unauthenticated",
        "detail": "You did not pass a valid authentication token",
        "status": 401,
    },
    "openai-batch": {
        "error": {
            "message": "Incorrect API key provided.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    },
    "ray-jobs": "Unauthorized",
}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(headers=AUTH, timeout=5) as http:
        yield http


async def _submit(http: httpx.AsyncClient, fake: RunningFake, api: Api, body: Any = None) -> str:
    r = await http.post(fake.url + api.submit_path, json=api.body if body is None else body, headers=_prefer(fake))
    assert r.status_code == api.submit_status, r.text
    path = api.status_path(r)
    return path if path.startswith("http") else fake.url + path


def _prefer(fake: RunningFake) -> dict[str, str]:
    return {"Prefer": "respond-async"} if fake.kind == "ogc-processes" else {}


async def _poll_words(http: httpx.AsyncClient, api: Api, url: str, reads: int) -> list[str]:
    words = []
    for _ in range(reads):
        r = await http.get(url)
        assert r.status_code == 200, r.text
        words.append(api.word(r.json()))
    return words


@pytest.mark.parametrize("kind", KINDS)
async def test_success_at_the_nth_read(kind: FakeKind, client: httpx.AsyncClient) -> None:
    api = APIS[kind]
    async with running_fake(kind) as fake:
        fake.state.polls_to_finish = 3
        url = await _submit(client, fake, api)
        words = await _poll_words(client, api, url, 4)
        assert words[1] != api.words[1] and words[2:] == [api.words[1], api.words[1]]
        st = fake.state
        assert (st.created, st.submits, st.polls, st.cancels) == (1, 1, 4, 0)


@pytest.mark.parametrize("kind", KINDS)
async def test_failure_from_input_and_from_next_outcome(kind: FakeKind, client: httpx.AsyncClient) -> None:
    api = APIS[kind]
    async with running_fake(kind) as fake:
        url = await _submit(client, fake, api, api.fail_body)
        assert await _poll_words(client, api, url, 2) == [await _first_word(api, kind), api.words[2]]
        fake.state.next_outcome = "fail"
        url = await _submit(client, fake, api)
        assert (await _poll_words(client, api, url, 2))[1] == api.words[2]


async def _first_word(api: Api, kind: FakeKind) -> str:
    return {"ogc-processes": "running", "replicate": "processing", "ray-jobs": "RUNNING"}.get(kind, api.words[0])


@pytest.mark.parametrize("kind", KINDS)
async def test_cancel(kind: FakeKind, client: httpx.AsyncClient) -> None:
    api = APIS[kind]
    method, cancel_path = api.cancel
    async with running_fake(kind) as fake:
        fake.state.polls_to_finish = 5
        url = await _submit(client, fake, api)
        await _poll_words(client, api, url, 1)
        r = await client.request(method, cancel_path(url))
        assert r.status_code == 200, r.text
        words = await _poll_words(client, api, url, 6)
        assert words[-1] == api.words[3] and set(words) <= {api.words[3], "cancelling"}
        assert fake.state.cancels == 1 and fake.state.jobs.popitem()[1].phase == "cancelled"


@pytest.mark.parametrize("kind", KINDS)
async def test_429_fault_then_success(kind: FakeKind, client: httpx.AsyncClient) -> None:
    api = APIS[kind]
    async with running_fake(kind) as fake:
        fake.state.fail_next("submit", 429, times=2)
        for _ in range(2):
            r = await client.post(fake.url + api.submit_path, json=api.body, headers=_prefer(fake))
            assert r.status_code == 429
        assert fake.state.created == 0 and fake.state.submits == 2
        url = await _submit(client, fake, api)
        fake.state.fail_next("any", 429, headers={"Retry-After": "7"}, body="slow down")
        r = await client.get(url)
        assert (r.status_code, r.headers["Retry-After"], r.text) == (429, "7", "slow down")
        assert r.headers["Content-Type"].startswith("text/plain")
        assert (await _poll_words(client, api, url, 2))[1] == api.words[1]
        assert (fake.state.created, fake.state.polls, fake.state.jobs.popitem()[1].polls) == (1, 3, 2)


@pytest.mark.parametrize("kind", KINDS)
async def test_401_without_token(kind: FakeKind) -> None:
    api = APIS[kind]
    async with running_fake(kind, token="secret") as fake, httpx.AsyncClient() as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, AUTH):
            r = await http.post(fake.url + api.submit_path, json=api.body, headers=headers)
            assert r.status_code == 401
        assert fake.state.created == 0 and fake.state.submits == 3
        body = r.text if kind == "ray-jobs" else r.json()
        assert body == UNAUTHORIZED[kind]


async def test_shaped_429_bodies(client: httpx.AsyncClient) -> None:
    expected: dict[FakeKind, tuple[dict[str, Any], str | None]] = {
        "replicate": ({"detail": "Request was throttled. Expected available in 2 seconds.", "status": 429}, "2"),
        "openai-batch": (
            {
                "error": {
                    "message": "Rate limit reached",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
            "2",
        ),
        "google-lro": ({"error": {"code": 429, "message": "Quota exceeded.", "status": "RESOURCE_EXHAUSTED"}}, None),
    }
    for kind, (body, retry_after) in expected.items():
        async with running_fake(kind) as fake:
            fake.state.fail_next("submit", 429)
            r = await client.post(fake.url + APIS[kind].submit_path, json=APIS[kind].body)
            assert (r.status_code, r.json(), r.headers.get("retry-after")) == (429, body, retry_after)


# --- ogc-processes ---------------------------------------------------------------------------------------------


async def test_ogc_results_links_and_dismiss(client: httpx.AsyncClient) -> None:
    async with running_fake("ogc-processes") as fake:
        r = await client.post(f"{fake.url}/processes/echo/execution", json={"inputs": {"a": 1}}, headers=_prefer(fake))
        job_id = r.json()["jobID"]
        assert r.headers["Location"] == f"{fake.url}/jobs/{job_id}"
        assert r.json() | {"jobID": job_id, "status": "accepted", "type": "process"} == r.json()
        assert (await client.get(f"{fake.url}/jobs/{job_id}/results")).json()["title"] == "result not ready"
        first = (await client.get(f"{fake.url}/jobs/{job_id}")).json()
        assert (first["status"], first["progress"], first["links"]) == ("running", 50, [])
        info = (await client.get(f"{fake.url}/jobs/{job_id}")).json()
        assert info["status"] == "successful" and info["progress"] == 100
        results = f"{fake.url}/jobs/{job_id}/results"
        rel = "http://www.opengis.net/def/rel/ogc/1.0/results"
        assert info["links"] == [{"href": results, "rel": rel, "type": "application/json"}]
        assert (await client.get(results)).json() == {"echo": {"a": 1}}
        assert fake.state.results == 2

        r = await client.post(f"{fake.url}/processes/echo/execution", json={"inputs": {}}, headers=_prefer(fake))
        dismissed = await client.delete(r.headers["Location"])
        assert dismissed.status_code == 200 and dismissed.json()["status"] == "dismissed"

        r = await client.post(f"{fake.url}/processes/nope/execution", json={"inputs": {}}, headers=_prefer(fake))
        assert r.status_code == 404 and r.json()["title"] == "No such process"
        assert r.json()["type"].endswith("/no-such-process")
        assert (await client.get(f"{fake.url}/jobs/unknown")).status_code == 404
        assert fake.state.created == 2


async def test_ogc_location_toggles(client: httpx.AsyncClient) -> None:
    async with running_fake("ogc-processes") as fake:
        fake.state.relative_location = True
        r = await client.post(f"{fake.url}/processes/echo/execution", json={"inputs": {}}, headers=_prefer(fake))
        assert r.headers["Location"] == f"/jobs/{r.json()['jobID']}"
        fake.state.foreign_location = "http://evil.example:9/jobs/x"
        r = await client.post(f"{fake.url}/processes/slow/execution", json={"inputs": {}}, headers=_prefer(fake))
        assert r.headers["Location"] == "http://evil.example:9/jobs/x"


async def test_ogc_sync_execution(client: httpx.AsyncClient) -> None:
    async with running_fake("ogc-processes") as fake:
        r = await client.post(f"{fake.url}/processes/echo/execution", json={"inputs": {"a": 2}})
        assert (r.status_code, r.json()) == (200, {"echo": {"a": 2}})


# --- google-lro ------------------------------------------------------------------------------------------------


async def test_google_operation_shape(client: httpx.AsyncClient) -> None:
    async with running_fake("google-lro") as fake:
        op = (await client.post(f"{fake.url}/v1/projects/p1/locations/us/jobs", json={"k": "v"})).json()
        assert op["name"].startswith("projects/p1/locations/us/operations/op-")
        assert op["done"] is False
        assert op["metadata"] == {"@type": "type.googleapis.com/longjobs.fake.Metadata", "progressPercent": 0}
        url = f"{fake.url}/v1/{op['name']}"
        assert (await client.get(url)).json()["metadata"]["progressPercent"] == 50
        done = (await client.get(url)).json()
        assert done["done"] is True and done["response"]["output"] == "done" and done["response"]["input"] == {"k": "v"}
        assert (await client.post(f"{url}:cancel")).json() == {}
        assert (await client.get(url)).json()["response"]["output"] == "done"  # too late to cancel

        wrong = url.replace("/locations/us/", "/locations/eu/")
        r = await client.get(wrong)
        assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"


# --- replicate -------------------------------------------------------------------------------------------------


async def test_replicate_prediction_shape(client: httpx.AsyncClient) -> None:
    async with running_fake("replicate") as fake:
        r = await client.post(f"{fake.url}/v1/predictions", json={"version": "abc", "input": {"p": "hi"}})
        pred = r.json()
        assert (pred["status"], pred["output"], pred["error"], pred["input"]) == ("starting", None, None, {"p": "hi"})
        assert pred["urls"] == {
            "get": f"{fake.url}/v1/predictions/{pred['id']}",
            "cancel": f"{fake.url}/v1/predictions/{pred['id']}/cancel",
        }
        assert (await client.get(pred["urls"]["get"])).json()["logs"] == "step 1/2\n"
        done = (await client.get(pred["urls"]["get"])).json()
        assert (done["status"], done["output"]) == ("succeeded", ["https://example.invalid/out.png"])

        r = await client.post(f"{fake.url}/v1/predictions", json={"version": "abc", "input": {"fail": True}})
        await client.get(r.json()["urls"]["get"])
        failed = (await client.get(r.json()["urls"]["get"])).json()
        assert (failed["status"], failed["error"]) == ("failed", "prediction failed: fake error")

        r = await client.post(f"{fake.url}/v1/predictions", json={"version": "abc", "input": {}})
        cancelled = await client.post(r.json()["urls"]["cancel"])
        assert cancelled.json()["status"] == "canceled"

        r = await client.get(f"{fake.url}/v1/predictions/nope")
        assert (r.status_code, r.json()) == (404, {"detail": "Not found."})


# --- openai-batch ----------------------------------------------------------------------------------------------


async def test_openai_batch_lifecycle_and_output_file(client: httpx.AsyncClient) -> None:
    async with running_fake("openai-batch") as fake:
        fake.state.polls_to_finish = 4
        body = {**APIS["openai-batch"].body, "metadata": {"run": "7"}}
        batch = (await client.post(f"{fake.url}/v1/batches", json=body)).json()
        assert batch["id"].startswith("batch_") and batch["object"] == "batch"
        assert (batch["status"], batch["output_file_id"], batch["metadata"]) == ("validating", None, {"run": "7"})
        assert batch["request_counts"] == {"total": 10, "completed": 0, "failed": 0}
        seen = []
        for _ in range(4):
            b = (await client.get(f"{fake.url}/v1/batches/{batch['id']}")).json()
            seen.append((b["status"], b["request_counts"]["completed"]))
        assert seen == [("in_progress", 2), ("in_progress", 5), ("finalizing", 7), ("completed", 10)]
        assert b["output_file_id"].startswith("file-out-")
        r = await client.get(f"{fake.url}/v1/files/{b['output_file_id']}/content")
        assert r.headers["Content-Type"].startswith("application/jsonl")
        lines = [json.loads(line) for line in r.text.splitlines()]
        assert [(x["custom_id"], x["response"]["status_code"]) for x in lines] == [("r1", 200), ("r2", 200)]
        assert (await client.get(f"{fake.url}/v1/files/file-nope/content")).status_code == 404


async def test_openai_batch_failed_expired_and_cancelling(client: httpx.AsyncClient) -> None:
    async with running_fake("openai-batch") as fake:
        base = APIS["openai-batch"].body
        failed = (await client.post(f"{fake.url}/v1/batches", json=APIS["openai-batch"].fail_body)).json()
        for _ in range(2):
            b = (await client.get(f"{fake.url}/v1/batches/{failed['id']}")).json()
        assert b["status"] == "failed" and b["errors"]["data"][0]["code"] == "invalid_json_line"

        expiring = (await client.post(f"{fake.url}/v1/batches", json={**base, "input_file_id": "file-expire"})).json()
        for _ in range(2):
            b = (await client.get(f"{fake.url}/v1/batches/{expiring['id']}")).json()
        assert b["status"] == "expired" and b["error_file_id"] is not None

        batch = (await client.post(f"{fake.url}/v1/batches", json=base)).json()
        assert (await client.post(f"{fake.url}/v1/batches/{batch['id']}/cancel")).json()["status"] == "cancelling"
        words = [(await client.get(f"{fake.url}/v1/batches/{batch['id']}")).json()["status"] for _ in range(3)]
        assert words == ["cancelling", "cancelled", "cancelled"]

        r = await client.post(f"{fake.url}/v1/batches", json={**base, "completion_window": "1h"})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


# --- ray-jobs --------------------------------------------------------------------------------------------------


async def test_ray_duplicate_submission_id_is_500_and_creates_nothing(client: httpx.AsyncClient) -> None:
    async with running_fake("ray-jobs") as fake:
        body = {"entrypoint": "echo hi", "submission_id": "my-id", "metadata": {"a": "b"}}
        r = await client.post(f"{fake.url}/api/jobs/", json=body)
        assert r.json() == {"submission_id": "my-id", "job_id": None}
        r = await client.post(f"{fake.url}/api/jobs/", json={**body, "entrypoint": "other"})
        assert r.status_code == 500
        assert r.text == "Job with submission_id my-id already exists. Please use a different submission_id."
        assert fake.state.created == 1 and fake.state.submits == 2
        assert fake.state.jobs["my-id"].input["entrypoint"] == "echo hi"


async def test_ray_details_logs_stop_and_no_auth(client: httpx.AsyncClient) -> None:
    async with running_fake("ray-jobs") as fake:
        r = await client.post(f"{fake.url}/api/jobs/", json={"entrypoint": "python a.py && exit 1"})
        job_id = r.json()["submission_id"]
        assert job_id.startswith("raysubmit_")
        for _ in range(2):
            d = (await client.get(f"{fake.url}/api/jobs/{job_id}")).json()
        assert (d["type"], d["status"], d["entrypoint"]) == ("SUBMISSION", "FAILED", "python a.py && exit 1")
        assert d["message"] == "Job entrypoint command failed with exit code 1" and d["end_time"] >= d["start_time"]
        assert (await client.post(f"{fake.url}/api/jobs/{job_id}/stop")).json() == {"stopped": False}
        logs = await client.get(f"{fake.url}/api/jobs/{job_id}/logs")
        assert logs.json() == {"logs": "hello from the fake ray job\n"}
        r = await client.get(f"{fake.url}/api/jobs/nope")
        assert (r.status_code, r.text) == (404, "Job nope does not exist.")

        fake.state.require_auth = False
        async with httpx.AsyncClient() as anonymous:
            r = await anonymous.post(f"{fake.url}/api/jobs/", json={"entrypoint": "true"})
            assert r.status_code == 200
