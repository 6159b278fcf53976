"""Callback and hybrid completion end to end: the dev server, the demo service (or a fake webhook-only API), the
callback receiver and the worker, all over loopback HTTP.

What is asserted is behaviour (how many status calls, how many callbacks, how the job ended), never timing.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from callbacks import ReceiverSettings, RunningReceiver, callback_url, new_secret, running_receiver, signed_headers
from demo_service import DEFAULT_WEBHOOK_SECRET, DemoService
from jobspec import ApiSpec
from tests.conftest import register_secret, unique_id
from tests.webhooks._support import (
    WebhookOnlyApi,
    application_error,
    end_if_running,
    failure_of,
    job_worker,
    result_of,
    running_webhook_only_api,
    start_demo_job,
    status_of,
    wait_for_status,
)
from workflows import JobRequest, JobResult, JobState, LongRunningJob

TOKEN_SECRET = register_secret(secrets.token_hex(16))
BEARER = "fake-replicate-bearer-" + secrets.token_hex(8)


@pytest.fixture
async def receiver(dev_env: WorkflowEnvironment) -> AsyncIterator[RunningReceiver]:
    """The receiver as the demo service needs it: callbacks signed with the demo's webhook secret."""
    settings = ReceiverSettings(token_secret=TOKEN_SECRET, signing_secret=DEFAULT_WEBHOOK_SECRET)
    async with running_receiver(dev_env.client, settings) as running:
        yield running


@pytest.fixture
def callback_environ(worker_environ: dict[str, str], receiver: RunningReceiver) -> dict[str, str]:
    return {**worker_environ, "CALLBACK_BASE_URL": receiver.url, "CALLBACK_SECRET": TOKEN_SECRET}


async def test_callback_completion_needs_one_confirming_poll(
    dev_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    callback_environ: dict[str, str],
) -> None:
    async with job_worker(dev_env.client, http, task_queue, callback_environ):
        handle = await start_demo_job(dev_env.client, demo, task_queue, completion="callback",
                                      input={"work_seconds": 1})
        result = await result_of(handle)
        status = await status_of(handle)
    assert result.state is JobState.SUCCEEDED
    assert result.result == {"output": "processed 0 items", "input": {}}
    [(job_id, job)] = demo.state.jobs.items()
    assert result.job_id == job_id
    # The API was given this workflow's callback URL, and called it once.
    assert job.callback_url == callback_url(callback_environ["CALLBACK_BASE_URL"], TOKEN_SECRET, handle.id)
    assert demo.state.callbacks_sent == 1 and demo.state.callbacks_failed == 0
    # No polling while waiting: the only GET is the one confirming the callback.
    assert demo.state.poll_requests == 1
    assert result.poll_count == 1
    assert status.callbacks_received == 1
    assert status.state is JobState.SUCCEEDED


async def test_lost_callback_is_rescued_by_fallback_polling(
    dev_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    callback_environ: dict[str, str],
) -> None:
    async with job_worker(dev_env.client, http, task_queue, callback_environ):
        handle = await start_demo_job(
            dev_env.client, demo, task_queue, completion="hybrid", callback_fallback_poll_seconds=1,
            input={"work_seconds": 1, "callback_drop": True},
        )
        result = await result_of(handle)
        status = await status_of(handle)
    assert result.state is JobState.SUCCEEDED
    [job] = demo.state.jobs.values()
    assert job.callback_url is not None and job.callback_drop  # asked to call back, never did
    assert demo.state.callback_attempts == 0
    assert status.callbacks_received == 0
    assert demo.state.poll_requests >= 1 and result.poll_count == demo.state.poll_requests


async def test_callback_wait_has_a_deadline(
    dev_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    callback_environ: dict[str, str],
) -> None:
    async with job_worker(dev_env.client, http, task_queue, callback_environ):
        handle = await start_demo_job(
            dev_env.client, demo, task_queue, completion="callback", job_timeout=timedelta(seconds=3),
            input={"work_seconds": 600, "callback_drop": True},
        )
        error = application_error(await failure_of(handle))
        status = await status_of(handle)
    assert error.type == "PollTimeout"
    assert status.state is JobState.TIMED_OUT and status.callbacks_received == 0
    # Callback mode never polls; the timed-out job is cancelled at the API.
    assert demo.state.poll_requests == 0
    [job] = demo.state.jobs.values()
    assert demo.state.cancel_requests == 1 and job.observe()[0] == "cancelled"


async def test_forged_and_unsigned_callbacks_never_reach_the_workflow(
    dev_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    callback_environ: dict[str, str], receiver: RunningReceiver,
) -> None:
    async with job_worker(dev_env.client, http, task_queue, callback_environ):
        handle = await start_demo_job(dev_env.client, demo, task_queue, completion="callback",
                                      input={"work_seconds": 600, "callback_drop": True})
        try:
            waiting = await wait_for_status(handle, lambda s: s.job_id is not None and s.state is JobState.POLLING,
                                            "waiting for its callback")
            url = callback_url(receiver.url, TOKEN_SECRET, handle.id)
            body = json.dumps({"id": waiting.job_id, "status": "succeeded", "result": {"forged": True}}).encode()
            json_type = {"Content-Type": "application/json"}
            forged = {**json_type, **signed_headers(new_secret(), body)}
            unsigned = json_type
            wrong_token = url.split("?", 1)[0] + "?token=" + "0" * 40
            good_signature = {**json_type, **signed_headers(DEFAULT_WEBHOOK_SECRET, body)}
            for target, headers in ((url, forged), (url, unsigned), (wrong_token, good_signature)):
                response = await http.post(target, content=body, headers=headers)
                assert response.status_code == 401, (target, headers, response.text)
            status = await status_of(handle)
            assert status.callbacks_received == 0
            assert status.state is JobState.POLLING
            assert demo.state.poll_requests == 0  # nothing made the job look at the API

            # The control: the same callback properly signed gets in, and one GET shows what the body claimed is not
            # true: the job is still queued at the API, so it keeps waiting.
            response = await http.post(url, content=body, headers=good_signature)
            assert response.status_code == 202, response.text
            status = await wait_for_status(handle, lambda s: s.poll_count == 1 and s.status_word is not None,
                                           "confirming the genuine callback")
            assert status.callbacks_received == 1 and status.state is JobState.POLLING
            assert status.status_word == "queued"
        finally:
            await end_if_running(handle)


# -- a webhook-only API: no status call at all ------------------------------------------------------------------


def webhook_only_spec(api: WebhookOnlyApi) -> ApiSpec:
    return ApiSpec.model_validate(
        {
            "name": "fake-webhook-only",
            "base_url": api.url,
            "submit": {"path": "/predictions", "headers": {"Prefer": "respond-async"}, "body": "$input",
                       "job_id_path": "id"},
            # A status URL exists only on paper: GET answers 405 (the job must never call it).
            "status": {
                "path": "/predictions/{job_id}",
                "status_path": "status",
                "states": {"starting": "pending", "processing": "running", "succeeded": "succeeded",
                           "failed": "failed", "canceled": "cancelled"},
                "error_path": "error",
                "result_path": "output",
            },
            "callback": {"url_field": "webhook", "webhook_only": True},
        }
    )


@pytest.fixture
async def bearer_receiver(dev_env: WorkflowEnvironment) -> AsyncIterator[RunningReceiver]:
    """A receiver in bearer-token mode (the fake API cannot sign)."""
    async with running_receiver(dev_env.client, ReceiverSettings(token_secret=TOKEN_SECRET, bearer_token=BEARER)) as r:
        yield r


def final(prediction_id: str, output: Any) -> dict[str, Any]:
    return {"id": prediction_id, "status": "succeeded", "output": output, "error": None}


async def test_webhook_only_api_completes_from_the_callback_body(
    dev_env: WorkflowEnvironment, http: httpx.AsyncClient, task_queue: str, bearer_receiver: RunningReceiver,
) -> None:
    output = {"image": "https://example.invalid/out.png", "seed": 42}

    def callbacks(prediction_id: str) -> list[tuple[float, dict[str, Any]]]:
        return [(0.3, {"id": prediction_id, "status": "processing", "output": None}),
                (0.3, final(prediction_id, output))]

    environ = {"CALLBACK_BASE_URL": bearer_receiver.url, "CALLBACK_SECRET": TOKEN_SECRET}
    async with running_webhook_only_api(BEARER, callbacks) as api, job_worker(
        dev_env.client, http, task_queue, environ
    ):
        request = JobRequest(api="fake-webhook-only", spec=webhook_only_spec(api), input={"prompt": "a cat"},
                             completion="callback")
        handle = await dev_env.client.start_workflow(LongRunningJob.run, request, id=unique_id("wo"),
                                                     task_queue=task_queue)
        result = await result_of(handle)
        status = await status_of(handle)
    assert result.state is JobState.SUCCEEDED
    assert result.result == output
    [submitted] = api.submits
    assert submitted["prompt"] == "a cat"
    assert submitted["webhook"] == callback_url(bearer_receiver.url, TOKEN_SECRET, handle.id)
    assert [status for _, status in api.deliveries] == [202, 202]
    assert status.callbacks_received == 2
    # The whole job without a single status read.
    assert api.status_gets == 0
    assert result.poll_count == 0 and status.poll_count == 0


async def test_webhook_only_api_survives_an_unreadable_callback(
    dev_env: WorkflowEnvironment, http: httpx.AsyncClient, task_queue: str, bearer_receiver: RunningReceiver,
) -> None:
    """A callback without a status word is a transient problem; the job must wait for the next callback, not GET."""

    def callbacks(prediction_id: str) -> list[tuple[float, dict[str, Any]]]:
        return [(0.1, {"id": prediction_id, "status": None}), (2.0, final(prediction_id, "done"))]

    environ = {"CALLBACK_BASE_URL": bearer_receiver.url, "CALLBACK_SECRET": TOKEN_SECRET}
    async with running_webhook_only_api(BEARER, callbacks) as api, job_worker(
        dev_env.client, http, task_queue, environ
    ):
        request = JobRequest(api="fake-webhook-only", spec=webhook_only_spec(api), input={"prompt": "a dog"},
                             completion="callback", poll_interval_seconds=0.5)
        handle = await dev_env.client.start_workflow(LongRunningJob.run, request, id=unique_id("wo"),
                                                     task_queue=task_queue)
        outcome: JobResult | BaseException
        try:
            outcome = await result_of(handle)
        except WorkflowFailureError as failure:
            outcome = failure.cause or failure  # today: PermanentHttpError "poll: HTTP 405"
        finally:
            await end_if_running(handle)
    assert api.status_gets == 0, f"the job read a status URL the API does not have; it ended with {outcome!r}"
    assert isinstance(outcome, JobResult) and outcome.result == "done"
