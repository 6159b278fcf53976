"""A dead notification endpoint on the time-skipping server: the job's result is a success.

On the dev server the run's result waits up to NOTIFY_GRACE (2 minutes) for notifications still retrying; here
that grace, and the retries' backoff, pass in skipped time, so the result itself can be read.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from callbacks import new_secret
from demo_service import DemoService
from tests.conftest import demo_request, unique_id
from tests.webhooks._support import Endpoints, Recorded, job_worker, result_of, running_endpoints
from workflows import JobState, LongRunningJob, NotifyTarget
from workflows._job_workflow import NOTIFY_GRACE

NOTIFY_SECRET = new_secret()
_started: list[WorkflowHandle[Any, Any]] = []


@pytest.fixture(autouse=True)
async def no_leftover_workflows() -> AsyncIterator[None]:
    """A run left open on the time-skipping server stalls time skipping for every later test: terminate it."""
    yield
    while _started:
        with contextlib.suppress(RPCError):
            await _started.pop().terminate(reason="test over")


async def test_dead_notification_endpoint_leaves_the_result_a_success(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    def broken(_request: Recorded, _nth: int) -> web.Response:
        return web.json_response({"error": "down"}, status=500)

    endpoints: Endpoints
    environ = {**worker_environ, "NOTIFY_SIGNING_SECRET": NOTIFY_SECRET}
    async with running_endpoints({"/dead": broken}) as endpoints, job_worker(
        time_env.client, http, task_queue, environ
    ):
        request = demo_request(demo, input={"work_polls": 1}, poll_interval_seconds=1,
                               notify=[NotifyTarget(url=f"{endpoints.url}/dead", events=["succeeded"])])
        handle = await time_env.client.start_workflow(LongRunningJob.run, request, id=unique_id("ts"),
                                                      task_queue=task_queue)
        _started.append(handle)
        result = await result_of(handle)
    assert result.state is JobState.SUCCEEDED
    attempts = endpoints.to("/dead")
    ids = {a.headers["webhook-id"] for a in attempts}
    assert len(attempts) >= 2 and len(ids) == 1 and next(iter(ids)).startswith(f"{handle.id}:")
    # The run waited for its notification a bounded time, then ended anyway, the notification still undelivered
    # (a retrying activity has no completed or failed event until its last attempt).
    timers = []
    notify_scheduled: set[int] = set()
    notify_closed: set[int] = set()
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            timers.append(event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta())
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if event.activity_task_scheduled_event_attributes.activity_type.name == "send_notification":
                notify_scheduled.add(event.event_id)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            notify_closed.add(event.activity_task_completed_event_attributes.scheduled_event_id)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            notify_closed.add(event.activity_task_failed_event_attributes.scheduled_event_id)
    assert NOTIFY_GRACE in timers
    assert len(notify_scheduled) == 1 and not notify_scheduled & notify_closed
