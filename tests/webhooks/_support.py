"""Shared pieces of the webhook tests: loopback HTTP apps that record what they get, a fake webhook-only API,
bounded waits, and a LongRunningJob worker wired to a callback receiver.

Everything here is real: aiohttp servers on 127.0.0.1, the dev server, the demo service, the receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import ClientSession, ClientTimeout, web
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowQueryFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.worker import Worker

from callbacks import verify
from demo_service import DemoService
from longjobs import new_worker
from tests.conftest import demo_request, unique_id
from workflows import JobResult, JobStatus, LongRunningJob

# A bound on waits for something that must happen soon (never a timing assertion).
HANG_GUARD_SECONDS = 60


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port for the block; yield its base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handler_cancellation=True)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@dataclass(frozen=True)
class Recorded:
    """One request an endpoint got: its path, headers (lower-cased names) and raw body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[["Recorded", int], Awaitable[web.StreamResponse] | web.StreamResponse]


@dataclass
class Endpoints:
    """An aiohttp app recording every request; ``routes[path](request, n)`` answers the n-th (0-based) one."""

    routes: dict[str, Responder]
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""

    def to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            recorded = Recorded(
                request.method, request.path, {k.lower(): v for k, v in request.headers.items()}, await request.read()
            )
            nth = len(self.to(request.path))
            self.requests.append(recorded)
            responder = self.routes.get(request.path)
            if responder is None:
                return web.json_response({"error": "no such route"}, status=404)
            answer = responder(recorded, nth)
            return await answer if isinstance(answer, Awaitable) else answer

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


@contextlib.asynccontextmanager
async def running_endpoints(routes: dict[str, Responder]) -> AsyncIterator[Endpoints]:
    endpoints = Endpoints(routes=routes)
    async with serving(endpoints.app()) as url:
        endpoints.url = url
        yield endpoints


# -- a webhook-only API (Replicate's shape, without any status endpoint) -----------------------------------------


@dataclass
class WebhookOnlyApi:
    """``POST /predictions`` (with ``Prefer: respond-async``) answers 202 ``{"id"}``, then POSTs each of
    ``callbacks(id)`` (delay, body) to the ``webhook`` URL of the request with ``Authorization: Bearer``.

    There is no way to read a prediction: every GET answers 405 and is counted in ``status_gets``.
    """

    bearer: str
    callbacks: Callable[[str], list[tuple[float, dict[str, Any]]]]
    url: str = ""
    submits: list[dict[str, Any]] = field(default_factory=list)
    submit_headers: list[dict[str, str]] = field(default_factory=list)
    status_gets: int = 0
    deliveries: list[tuple[str, int]] = field(default_factory=list)  # (prediction id, receiver's status code)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def app(self) -> web.Application:
        async def create(request: web.Request) -> web.Response:
            body = await request.json()
            self.submits.append(body)
            self.submit_headers.append({k.lower(): v for k, v in request.headers.items()})
            if request.headers.get("Prefer") != "respond-async":
                return web.json_response({"error": "this fake only does Prefer: respond-async"}, status=400)
            prediction_id = f"p_{uuid.uuid4().hex[:10]}"
            task = asyncio.get_running_loop().create_task(self._call_back(body["webhook"], prediction_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return web.json_response({"id": prediction_id, "status": "starting"}, status=202)

        async def no_reading(request: web.Request) -> web.Response:
            self.status_gets += 1
            return web.json_response({"error": "method not allowed"}, status=405)

        app = web.Application()
        app.router.add_post("/predictions", create)
        app.router.add_get("/{tail:.*}", no_reading, allow_head=False)
        return app

    async def _call_back(self, url: str, prediction_id: str) -> None:
        headers = {"Authorization": f"Bearer {self.bearer}", "Content-Type": "application/json"}
        async with ClientSession(timeout=ClientTimeout(total=10)) as session:
            for delay, body in self.callbacks(prediction_id):
                await asyncio.sleep(delay)
                async with session.post(url, data=json.dumps(body), headers=headers) as response:
                    self.deliveries.append((prediction_id, response.status))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def running_webhook_only_api(
    bearer: str, callbacks: Callable[[str], list[tuple[float, dict[str, Any]]]]
) -> AsyncIterator[WebhookOnlyApi]:
    api = WebhookOnlyApi(bearer=bearer, callbacks=callbacks)
    try:
        async with serving(api.app()) as url:
            api.url = url
            yield api
    finally:
        await api.close()


# -- notifications ---------------------------------------------------------------------------------------------


def verified_notifications(requests: list[Recorded], secret: str, workflow_id: str) -> dict[str, list[Recorded]]:
    """The notifications about ``workflow_id``, each signature checked, grouped by event, one per webhook-id."""
    by_event: dict[str, dict[str, Recorded]] = {}
    for recorded in requests:
        payload = recorded.json()
        if payload.get("workflow_id") != workflow_id:
            continue
        msg_id = verify(secret, recorded.headers, recorded.body)  # raises SignatureError on a bad one
        assert msg_id == recorded.headers["webhook-id"]
        by_event.setdefault(payload["event"], {}).setdefault(msg_id, recorded)
    return {event: list(ids.values()) for event, ids in by_event.items()}


# -- Temporal --------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def job_worker(
    client: Client, http: httpx.AsyncClient, task_queue: str, environ: Mapping[str, str]
) -> AsyncIterator[Worker]:
    async with new_worker(client, http, task_queue=task_queue, environ=dict(environ)) as worker:
        yield worker


async def start_demo_job(
    client: Client, demo: DemoService, task_queue: str, **fields: Any
) -> WorkflowHandle[Any, JobResult]:
    """A LongRunningJob on the demo service on the dev server (JobState published: the dev server has it)."""
    return await client.start_workflow(
        LongRunningJob.run, demo_request(demo, time_skipping=False, **fields), id=unique_id("wh"), task_queue=task_queue
    )


async def status_of(handle: WorkflowHandle[Any, Any]) -> JobStatus:
    status: JobStatus = await handle.query(LongRunningJob.status)
    return status


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HANG_GUARD_SECONDS
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"never happened: {what}")
        await asyncio.sleep(0.05)


async def wait_for_status(
    handle: WorkflowHandle[Any, Any], predicate: Callable[[JobStatus], bool], what: str
) -> JobStatus:
    """Poll the status query until ``predicate`` holds (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HANG_GUARD_SECONDS
    last: JobStatus | None = None
    while loop.time() < deadline:
        try:
            last = await status_of(handle)
        except (RPCError, WorkflowQueryFailedError):
            last = None  # its first workflow task has not run yet
        else:
            if predicate(last):
                return last
        await asyncio.sleep(0.05)
    pytest.fail(f"the job never got to {what}; last status: {last}")


async def result_of(handle: WorkflowHandle[Any, JobResult]) -> JobResult:
    return await asyncio.wait_for(handle.result(), timeout=HANG_GUARD_SECONDS)


async def failure_of(handle: WorkflowHandle[Any, Any]) -> BaseException:
    """The cause of the run's failure (an ApplicationError, a CancelledError...)."""
    with pytest.raises(WorkflowFailureError) as caught:
        await result_of(handle)
    cause = caught.value.cause
    assert cause is not None
    return cause


def application_error(cause: BaseException) -> ApplicationError:
    assert isinstance(cause, ApplicationError), repr(cause)
    return cause


async def end_if_running(handle: WorkflowHandle[Any, Any]) -> None:
    """Terminate a run a test leaves behind (the dev server keeps it otherwise)."""
    with contextlib.suppress(RPCError):
        await handle.terminate(reason="test over")
