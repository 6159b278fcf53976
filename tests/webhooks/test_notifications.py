"""Outbound notifications end to end on the dev server: one Standard Webhooks signed POST per event, checked by
a recording endpoint with the worker's NOTIFY_SIGNING_SECRET; a dead endpoint never holds the job up."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from temporalio.exceptions import CancelledError
from temporalio.testing import WorkflowEnvironment

from callbacks import new_secret
from demo_service import DemoService
from tests.conftest import register_secret
from tests.webhooks._support import (
    Endpoints,
    Recorded,
    application_error,
    end_if_running,
    eventually,
    failure_of,
    job_worker,
    result_of,
    running_endpoints,
    start_demo_job,
    status_of,
    verified_notifications,
    wait_for_status,
)
from workflows import JobState, LongRunningJob, NotifyTarget
from workflows._models import NotifyEvent

NOTIFY_SECRET = register_secret(new_secret())
ROTATED = "rotated-token-0b7e"
QUICK = 0.2  # poll interval of the demo jobs here
ADMIN_HEADERS = {"X-Admin-Key": "test-admin"}


def ok(_request: Recorded, _nth: int) -> web.Response:
    return web.Response(status=204)


def broken(_request: Recorded, _nth: int) -> web.Response:
    return web.json_response({"error": "we are down"}, status=500)


@pytest.fixture
async def hooks() -> AsyncIterator[Endpoints]:
    async with running_endpoints({"/hook": ok, "/only-success": ok, "/dead": broken}) as endpoints:
        yield endpoints


@pytest.fixture
def notify_environ(worker_environ: dict[str, str]) -> dict[str, str]:
    return {**worker_environ, "NOTIFY_SIGNING_SECRET": NOTIFY_SECRET}


def to_hook(hooks: Endpoints, path: str = "/hook", events: list[NotifyEvent] | None = None) -> list[NotifyTarget]:
    target = NotifyTarget(url=f"{hooks.url}{path}")
    return [target if events is None else target.model_copy(update={"events": events})]


def check_payload(recorded: Recorded, workflow_id: str, event: str, job_id: str | None) -> dict[str, object]:
    payload = recorded.json()
    assert isinstance(payload, dict)
    assert recorded.headers["webhook-id"].startswith(f"{workflow_id}:")  # one id per message, kept on retries
    assert recorded.headers["content-type"] == "application/json"
    assert payload["event"] == event and payload["workflow_id"] == workflow_id and payload["api"] == "demo"
    assert payload["job_id"] == job_id
    return payload


async def test_paused_resumed_and_succeeded_job_notifies_each_event_once(
    dev_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    notify_environ: dict[str, str], token_file: Path, hooks: Endpoints,
) -> None:
    demo.state.token = ROTATED  # the worker's token file still holds the old one: the submit gets a 401
    async with job_worker(dev_env.client, http, task_queue, notify_environ):
        handle = await start_demo_job(
            dev_env.client, demo, task_queue, input={"work_polls": 1, "n": 1}, poll_interval_seconds=QUICK,
            notify=[*to_hook(hooks), *to_hook(hooks, "/only-success", events=["succeeded"])],
        )
        paused = await wait_for_status(handle, lambda s: s.state is JobState.AUTH_PAUSED, "auth_paused")
        assert paused.job_id is None and paused.last_error is not None and paused.last_error.http_status == 401

        # The pause is announced while it lasts, with the command that ends it.
        await eventually(lambda: len(hooks.to("/hook")) == 1, "the auth_paused notification")
        [pause_note] = hooks.to("/hook")
        pause = check_payload(pause_note, handle.id, "auth_paused", None)
        assert pause["state"] == "auth_paused"
        assert handle.id in str(pause["resume_command"]) and handle.id in str(pause["resume_command_temporal_cli"])
        assert "invalid or missing token" in str(pause["error"])  # the API's own words

        token_file.write_text(ROTATED)
        await handle.signal(LongRunningJob.resume)
        result = await result_of(handle)
    assert result.state is JobState.SUCCEEDED

    # Every request to /hook was about this job and signed; each event exactly once.
    notes = verified_notifications(hooks.to("/hook"), NOTIFY_SECRET, handle.id)
    assert sorted(notes) == ["auth_paused", "submitted", "succeeded"]
    assert all(len(copies) == 1 for copies in notes.values()), notes
    assert len(hooks.to("/hook")) == 3  # nothing was retried: the endpoint answered 204 each time
    check_payload(notes["submitted"][0], handle.id, "submitted", result.job_id)
    done = check_payload(notes["succeeded"][0], handle.id, "succeeded", result.job_id)
    assert done["state"] == "succeeded" and done["result"] == result.result
    # A target that asked for one event gets that event only.
    only = verified_notifications(hooks.to("/only-success"), NOTIFY_SECRET, handle.id)
    assert list(only) == ["succeeded"] and len(hooks.to("/only-success")) == 1


async def test_failed_job_notifies_failed(
    dev_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    notify_environ: dict[str, str], hooks: Endpoints,
) -> None:
    async with job_worker(dev_env.client, http, task_queue, notify_environ):
        handle = await start_demo_job(dev_env.client, demo, task_queue, input={"work_polls": 1, "fail": "disk full"},
                                      poll_interval_seconds=QUICK, notify=to_hook(hooks))
        error = application_error(await failure_of(handle))
    assert error.type == "JobFailed"
    notes = verified_notifications(hooks.to("/hook"), NOTIFY_SECRET, handle.id)
    assert sorted(notes) == ["failed", "submitted"] and len(hooks.to("/hook")) == 2
    [job_id] = demo.state.jobs
    failed = check_payload(notes["failed"][0], handle.id, "failed", job_id)
    assert failed["state"] == "failed" and "JobFailed" in str(failed["error"]) and "disk full" in str(failed["error"])
    assert "result" not in failed


async def test_cancelled_job_notifies_cancelled(
    dev_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    notify_environ: dict[str, str], hooks: Endpoints,
) -> None:
    async with job_worker(dev_env.client, http, task_queue, notify_environ):
        handle = await start_demo_job(dev_env.client, demo, task_queue, input={"work_polls": 10_000},
                                      poll_interval_seconds=QUICK, notify=to_hook(hooks))
        await wait_for_status(handle, lambda s: s.state is JobState.POLLING and s.poll_count >= 1, "polling")
        await handle.cancel()
        assert isinstance(await failure_of(handle), CancelledError)
    notes = verified_notifications(hooks.to("/hook"), NOTIFY_SECRET, handle.id)
    assert sorted(notes) == ["cancelled", "submitted"] and len(hooks.to("/hook")) == 2
    [job_id] = demo.state.jobs
    cancelled = check_payload(notes["cancelled"][0], handle.id, "cancelled", job_id)
    assert cancelled["state"] == "cancelled"
    assert demo.state.cancel_requests == 1  # and the API was told


async def test_timed_out_job_notifies_timed_out(
    dev_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    notify_environ: dict[str, str], hooks: Endpoints,
) -> None:
    async with job_worker(dev_env.client, http, task_queue, notify_environ):
        handle = await start_demo_job(dev_env.client, demo, task_queue, input={"work_polls": 10_000},
                                      poll_interval_seconds=0.5, job_timeout=timedelta(seconds=2),
                                      notify=to_hook(hooks))
        error = application_error(await failure_of(handle))
    assert error.type == "PollTimeout"
    notes = verified_notifications(hooks.to("/hook"), NOTIFY_SECRET, handle.id)
    assert sorted(notes) == ["submitted", "timed_out"] and len(hooks.to("/hook")) == 2
    [job_id] = demo.state.jobs
    timed_out = check_payload(notes["timed_out"][0], handle.id, "timed_out", job_id)
    assert timed_out["state"] == "timed_out" and "PollTimeout" in str(timed_out["error"])


async def test_dead_notification_endpoint_does_not_hold_the_job_up(
    dev_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    notify_environ: dict[str, str], hooks: Endpoints,
) -> None:
    """Answering 500 to every notification fails nothing: the job polls on and succeeds while they are retried.

    The test stops at the job's success (state ``succeeded``) and terminates the run: the run itself stays
    open for up to NOTIFY_GRACE (2 minutes) waiting for those notifications, which is not waited for here
    (``test_notifications_time_skipping.py`` lets that grace pass in skipped time and reads the result).
    """
    async with job_worker(dev_env.client, http, task_queue, notify_environ):
        handle = await start_demo_job(dev_env.client, demo, task_queue, input={"work_polls": 2},
                                      poll_interval_seconds=QUICK, notify=to_hook(hooks, "/dead"))
        try:
            status = await wait_for_status(handle, lambda s: s.state.is_terminal, "its end")
            assert status.state is JobState.SUCCEEDED and status.poll_count == 2
            # Retried in the background: the same message (same webhook-id, same signed body) again.
            def submitted() -> list[Any]:
                return [r for r in hooks.to("/dead") if r.json()["event"] == "submitted"]

            await eventually(lambda: len(submitted()) >= 2, "a retry of the submitted notification")
            copies = submitted()
            assert len({r.body for r in copies}) == 1
            assert len({r.headers["webhook-id"] for r in copies}) == 1
            assert verified_notifications(copies, NOTIFY_SECRET, handle.id).keys() == {"submitted"}
            assert (await status_of(handle)).state is JobState.SUCCEEDED
        finally:
            await end_if_running(handle)


async def test_second_auth_pause_is_a_new_message(
    dev_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    notify_environ: dict[str, str], token_file: Path, hooks: Endpoints,
) -> None:
    demo.state.token = ROTATED  # pause 1: the submit gets a 401
    fault = {"match": "poll", "status": 401, "times": 1, "body": json.dumps({"error": "token revoked"})}
    assert (await http.post(f"{demo.url}/admin/faults", json=fault, headers=ADMIN_HEADERS)).status_code == 200
    async with job_worker(dev_env.client, http, task_queue, notify_environ):
        handle = await start_demo_job(dev_env.client, demo, task_queue, input={"work_polls": 1},
                                      poll_interval_seconds=QUICK, notify=to_hook(hooks, events=["auth_paused"]))
        try:
            await wait_for_status(handle, lambda s: s.state is JobState.AUTH_PAUSED, "the first pause")
            token_file.write_text(ROTATED)
            await handle.signal(LongRunningJob.resume)
            # Pause 2: the first poll gets a 401 too.
            await wait_for_status(handle, lambda s: s.state is JobState.AUTH_PAUSED and s.job_id is not None,
                                  "the second pause")
            await handle.signal(LongRunningJob.resume)
            result = await result_of(handle)
        finally:
            await end_if_running(handle)
    assert result.state is JobState.SUCCEEDED
    pauses = hooks.to("/hook")
    # Two different messages arrived (the second names the job id the first could not)...
    assert [p.json()["job_id"] for p in pauses] == [None, result.job_id]
    # ...so a receiver must be able to tell them apart.
    assert len({p.headers["webhook-id"] for p in pauses}) == 2, [p.headers["webhook-id"] for p in pauses]
