"""The spec features real job APIs need, through the activities with ``httpx.MockTransport``: status and result
links, caller-chosen ids, overrides, done flags, ratio progress, resource-path ids, body templates."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from activities import FetchResultInput, JobApiActivities, OutcomeClass, PollJobInput, SubmitJobInput
from jobspec import ApiSpec, JobPhase

BASE = "http://api.test"


def spec(**sections: Any) -> ApiSpec:
    data: dict[str, Any] = {
        "name": "shape",
        "base_url": BASE,
        "submit": {"path": "/jobs", "job_id_path": "id", "idempotency_header": None},
        "status": {"path": "/jobs/{job_id}", "status_path": "status",
                   "states": {"running": "running", "done": "succeeded", "broken": "failed"}},
    }
    for name, value in sections.items():
        data[name] = {**data[name], **value} if isinstance(data.get(name), dict) else value
    return ApiSpec.model_validate(data)


class Recorder:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.answers: list[httpx.Response] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers.pop(0)


@pytest.fixture
async def api() -> AsyncIterator[tuple[Recorder, JobApiActivities]]:
    recorder = Recorder()
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client:
        yield recorder, JobApiActivities(client, environ={})


def submit_input(api_spec: ApiSpec, job_input: Any = None) -> SubmitJobInput:
    return SubmitJobInput(spec=api_spec, job_input=job_input or {}, idempotency_key="k", workflow_id="wf-1")


async def test_status_url_from_a_link_in_the_submit_answer(api: tuple[Recorder, JobApiActivities]) -> None:
    recorder, acts = api
    shape = spec(status={"url_from": "link", "link_path": "urls.get"})
    recorder.answers.append(httpx.Response(201, json={"id": "p1", "urls": {"get": f"{BASE}/v1/predictions/p1"}}))
    submitted = await acts.submit_job(submit_input(shape))
    assert submitted.status_url == f"{BASE}/v1/predictions/p1"
    recorder.answers.append(httpx.Response(200, json={"status": "running"}))
    await acts.poll_job(PollJobInput(spec=shape, job_id="p1", status_url=submitted.status_url))
    assert str(recorder.requests[-1].url) == f"{BASE}/v1/predictions/p1"


async def test_a_link_to_another_origin_is_refused_before_any_request(api: tuple[Recorder, JobApiActivities]) -> None:
    recorder, acts = api
    shape = spec(status={"url_from": "link", "link_path": "urls.get"})
    recorder.answers.append(httpx.Response(201, json={"id": "p1", "urls": {"get": "http://elsewhere.test/p1"}}))
    outcome = await acts.submit_job(submit_input(shape))
    assert outcome.outcome is OutcomeClass.PERMANENT and "refusing to follow" in outcome.message
    polled = await acts.poll_job(PollJobInput(spec=shape, job_id="p1", status_url="http://elsewhere.test/p1"))
    assert polled.outcome is OutcomeClass.PERMANENT
    assert len(recorder.requests) == 1  # the poll never left: no credential went to the foreign host


async def test_an_allowed_origin_is_followed(api: tuple[Recorder, JobApiActivities]) -> None:
    recorder, acts = api
    shape = spec(status={"url_from": "location"}, allowed_origins=["https://status.test"])
    recorder.answers.append(httpx.Response(202, json={"id": "j"}, headers={"Location": "https://status.test/j"}))
    assert (await acts.submit_job(submit_input(shape))).status_url == "https://status.test/j"


async def test_caller_chosen_id_goes_in_the_body_and_already_exists_is_adopted(
    api: tuple[Recorder, JobApiActivities],
) -> None:
    recorder, acts = api
    shape = spec(
        submit={"body": {"entrypoint": "$input.entrypoint", "env": "$input.env", "submission_id": "{job_id}"},
                "client_job_id": "longjobs-{workflow_id}", "job_id_path": "submission_id"},
        overrides=[{"status": 500, "step": "submit", "body_contains": "already exists", "outcome": "already_exists"}],
    )
    recorder.answers.append(httpx.Response(500, text="Job with submission_id longjobs-wf-1 already exists."))
    outcome = await acts.submit_job(submit_input(shape, {"entrypoint": "python x.py"}))
    assert outcome.outcome is OutcomeClass.OK and outcome.job_id == "longjobs-wf-1"
    body = json.loads(recorder.requests[0].content)
    assert body == {"entrypoint": "python x.py", "submission_id": "longjobs-wf-1"}  # missing $input.env omitted


async def test_a_500_without_the_override_text_stays_a_server_error(api: tuple[Recorder, JobApiActivities]) -> None:
    recorder, acts = api
    shape = spec(
        submit={"client_job_id": "{workflow_id}"},
        overrides=[{"status": 500, "step": "submit", "body_contains": "already exists", "outcome": "already_exists"}],
    )
    recorder.answers.append(httpx.Response(500, text="database on fire"))
    assert (await acts.submit_job(submit_input(shape))).outcome is OutcomeClass.SERVER_ERROR


async def test_in_progress_override_on_poll(api: tuple[Recorder, JobApiActivities]) -> None:
    recorder, acts = api
    shape = spec(overrides=[{"status": 409, "step": "poll", "outcome": "in_progress"}])
    recorder.answers.append(httpx.Response(409, json={"error": "still working"}))
    outcome = await acts.poll_job(PollJobInput(spec=shape, job_id="j"))
    assert outcome.outcome is OutcomeClass.OK and outcome.phase is JobPhase.RUNNING


@pytest.mark.parametrize(
    ("document", "phase", "error"),
    [
        ({"name": "operations/o", "metadata": {}}, JobPhase.RUNNING, None),  # proto3 JSON leaves done out
        ({"done": False}, JobPhase.RUNNING, None),
        ({"done": True, "response": {"x": 1}}, JobPhase.SUCCEEDED, None),
        ({"done": True, "error": {"code": 13, "message": "boom"}}, JobPhase.FAILED, "boom"),
        ({"done": True, "error": {"code": 1, "message": "cancelled"}}, JobPhase.CANCELLED, "cancelled"),
    ],
)
async def test_done_flag_status(
    api: tuple[Recorder, JobApiActivities], document: dict[str, Any], phase: JobPhase, error: str | None
) -> None:
    recorder, acts = api
    shape = spec(status={"status_path": None, "states": {}, "done_path": "done", "error_path": "error",
                         "result_path": "response", "cancelled_when": {"path": "error.code", "equals": 1}})
    recorder.answers.append(httpx.Response(200, json=document))
    outcome = await acts.poll_job(PollJobInput(spec=shape, job_id="j"))
    assert outcome.phase is phase
    assert outcome.job_error == error
    if phase is JobPhase.SUCCEEDED:
        assert outcome.result == {"x": 1}


async def test_progress_as_a_ratio(api: tuple[Recorder, JobApiActivities]) -> None:
    recorder, acts = api
    shape = spec(status={"progress_path": "counts.completed", "progress_total_path": "counts.total"})
    recorder.answers.append(httpx.Response(200, json={"status": "running", "counts": {"completed": 3, "total": 12}}))
    assert (await acts.poll_job(PollJobInput(spec=shape, job_id="j"))).progress == 25.0


async def test_resource_path_ids_keep_slashes_but_not_dot_dot(api: tuple[Recorder, JobApiActivities]) -> None:
    recorder, acts = api
    shape = spec(status={"path": "/v1/{job_id}"}, job_id_in_path="path")
    recorder.answers.append(httpx.Response(200, json={"status": "running"}))
    await acts.poll_job(PollJobInput(spec=shape, job_id="projects/p/operations/o 1"))
    assert recorder.requests[-1].url.raw_path == b"/v1/projects/p/operations/o%201"
    refused = await acts.poll_job(PollJobInput(spec=shape, job_id="projects/../admin"))
    assert refused.outcome is OutcomeClass.PERMANENT
    assert len(recorder.requests) == 1


async def test_result_by_id_as_json_lines(api: tuple[Recorder, JobApiActivities]) -> None:
    recorder, acts = api
    shape = spec(result={"path": "/files/{result_id}/content", "id_path": "output_file_id", "format": "jsonl"})
    recorder.answers.append(httpx.Response(200, json={"status": "done", "output_file_id": "file-9"}))
    polled = await acts.poll_job(PollJobInput(spec=shape, job_id="j"))
    assert polled.result_ref == "file-9"
    recorder.answers.append(httpx.Response(200, text='{"line": 1}\n{"line": 2}\n'))
    fetched = await acts.fetch_result(FetchResultInput(spec=shape, job_id="j", result_ref=polled.result_ref))
    assert fetched.result == [{"line": 1}, {"line": 2}]
    assert recorder.requests[-1].url.path == "/files/file-9/content"


async def test_result_by_link_in_the_final_status(api: tuple[Recorder, JobApiActivities]) -> None:
    recorder, acts = api
    shape = spec(result={"link_path": "links.results", "format": "text"})
    recorder.answers.append(httpx.Response(200, json={"status": "done", "links": {"results": "/out/j.txt"}}))
    polled = await acts.poll_job(PollJobInput(spec=shape, job_id="j"))
    assert polled.result_ref == f"{BASE}/out/j.txt"
    recorder.answers.append(httpx.Response(200, text="all good"))
    fetched = await acts.fetch_result(FetchResultInput(spec=shape, job_id="j", result_ref=polled.result_ref))
    assert fetched.result == "all good"


async def test_no_result_id_means_nothing_to_fetch(api: tuple[Recorder, JobApiActivities]) -> None:
    recorder, acts = api
    shape = spec(result={"path": "/files/{result_id}/content", "id_path": "output_file_id"})
    fetched = await acts.fetch_result(FetchResultInput(spec=shape, job_id="j", result_ref=None))
    assert fetched.outcome is OutcomeClass.OK and fetched.result is None
    assert recorder.requests == []
