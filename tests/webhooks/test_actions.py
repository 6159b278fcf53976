"""Follow-up actions on the dev server: after the job succeeds, each action POSTs the result to a loopback
endpoint; its JSON answer lands in ``JobResult.actions``, an optional failure in ``action_errors``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from temporalio.testing import WorkflowEnvironment

from demo_service import DemoService
from jobspec import ActionSpec
from tests.webhooks._support import (
    Endpoints,
    Recorded,
    Responder,
    application_error,
    failure_of,
    job_worker,
    result_of,
    running_endpoints,
    start_demo_job,
    status_of,
)
from workflows import JobState

QUICK = 0.2
JOB_INPUT = {"work_polls": 1, "text": "I love it"}
EXPECTED_RESULT = {"output": "processed 1 items", "input": {"text": "I love it"}}


def sentiment(request: Recorded, _nth: int) -> web.Response:
    return web.json_response({"sentiment": 0.9, "echo": request.json()})


def bad_request(_request: Recorded, _nth: int) -> web.Response:
    return web.json_response({"error": "unknown model"}, status=400)


def rate_limited_once(_request: Recorded, nth: int) -> web.Response:
    if nth == 0:
        return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": "1"})
    return web.json_response({"stored": True})


@pytest.fixture
async def endpoints() -> AsyncIterator[Endpoints]:
    routes: dict[str, Responder] = {"/sentiment": sentiment, "/bad": bad_request, "/flaky": rate_limited_once}
    async with running_endpoints(routes) as running:
        yield running


def action(endpoints: Endpoints, name: str, path: str, **fields: Any) -> ActionSpec:
    return ActionSpec(name=name, url=f"{endpoints.url}{path}", **fields)


async def test_action_answer_lands_in_the_result(
    dev_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str], endpoints: Endpoints,
) -> None:
    async with job_worker(dev_env.client, http, task_queue, worker_environ):
        handle = await start_demo_job(dev_env.client, demo, task_queue, input=JOB_INPUT, poll_interval_seconds=QUICK,
                                      actions=[action(endpoints, "sentiment", "/sentiment")])
        result = await result_of(handle)
    assert result.state is JobState.SUCCEEDED and result.result == EXPECTED_RESULT
    assert result.actions["sentiment"]["sentiment"] == 0.9
    [call] = endpoints.to("/sentiment")
    assert call.method == "POST" and call.headers["content-type"] == "application/json"
    assert call.json() == EXPECTED_RESULT  # "$result": the job's result as the body
    assert result.actions["sentiment"]["echo"] == EXPECTED_RESULT
    assert result.action_errors == {}


async def test_optional_action_refused_leaves_the_job_succeeded(
    dev_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str], endpoints: Endpoints,
) -> None:
    actions = [action(endpoints, "bad", "/bad"), action(endpoints, "sentiment", "/sentiment")]
    async with job_worker(dev_env.client, http, task_queue, worker_environ):
        handle = await start_demo_job(dev_env.client, demo, task_queue, input=JOB_INPUT, poll_interval_seconds=QUICK,
                                      actions=actions)
        result = await result_of(handle)
    assert result.state is JobState.SUCCEEDED and result.result == EXPECTED_RESULT
    assert list(result.action_errors) == ["bad"] and "400" in result.action_errors["bad"]
    assert "bad" not in result.actions
    assert result.actions["sentiment"]["sentiment"] == 0.9  # the next action still ran
    assert len(endpoints.to("/bad")) == 1  # a 400 is not retried


async def test_required_action_refused_fails_the_job(
    dev_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str], endpoints: Endpoints,
) -> None:
    async with job_worker(dev_env.client, http, task_queue, worker_environ):
        handle = await start_demo_job(dev_env.client, demo, task_queue, input=JOB_INPUT, poll_interval_seconds=QUICK,
                                      actions=[action(endpoints, "bad", "/bad", required=True)])
        error = application_error(await failure_of(handle))
        status = await status_of(handle)
    assert error.type == "ActionFailed"
    assert "bad" in error.message and "400" in error.message
    assert status.state is JobState.FAILED
    assert len(endpoints.to("/bad")) == 1


async def test_rate_limited_action_is_retried_and_lands(
    dev_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str], endpoints: Endpoints,
) -> None:
    async with job_worker(dev_env.client, http, task_queue, worker_environ):
        handle = await start_demo_job(dev_env.client, demo, task_queue, input=JOB_INPUT, poll_interval_seconds=QUICK,
                                      initial_backoff_seconds=QUICK, actions=[action(endpoints, "flaky", "/flaky")])
        result = await result_of(handle)
        status = await status_of(handle)
    assert result.state is JobState.SUCCEEDED
    assert result.actions == {"flaky": {"stored": True}} and result.action_errors == {}
    calls = endpoints.to("/flaky")
    assert len(calls) == 2 and calls[0].body == calls[1].body  # the same call again
    assert result.total_error_count == 1
    assert status.last_error is not None and status.last_error.http_status == 429
    assert status.last_error.step == "action flaky"
