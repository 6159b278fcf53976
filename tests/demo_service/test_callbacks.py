"""Tests of the demo service's signed callbacks, received by a tiny aiohttp receiver on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web

from callbacks._signing import SignatureError, new_secret, verify
from demo_service import DEFAULT_WEBHOOK_SECRET, DemoService, create_app, running_demo_service
from demo_service.__main__ import parse_args
from demo_service.app import CALLBACK_RETRY_DELAYS, service_url, start_runner

ADMIN = {"X-Admin-Key": "demo-admin"}
FAST_RETRIES = (0.01, 0.02)


@dataclass
class Receiver:
    """Records every request it gets; answers with the queued ``statuses`` first, then 200."""

    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    hang: bool = False

    def bodies(self) -> list[Any]:
        return [json.loads(body) for _, body in self.requests]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = web.Application()
    rec = Receiver(url="")

    async def hook(request: web.Request) -> web.Response:
        rec.requests.append(({k.lower(): v for k, v in request.headers.items()}, await request.read()))
        if rec.hang:
            await asyncio.sleep(30)
        return web.Response(status=rec.statuses.pop(0) if rec.statuses else 200)

    app.router.add_post("/hook", hook)
    runner, port = await start_runner(app, "127.0.0.1", 0)
    rec.url = f"{service_url('127.0.0.1', port)}/hook"
    try:
        yield rec
    finally:
        await runner.cleanup()


@pytest.fixture
async def service() -> AsyncIterator[DemoService]:
    async with running_demo_service(port=0) as svc:
        svc.state.callback_retry_delays = FAST_RETRIES
        yield svc


@pytest.fixture
async def client(service: DemoService) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.url, headers={"Authorization": "Bearer demo-token"}, timeout=5) as c:
        yield c


async def submit(client: httpx.AsyncClient, **body: Any) -> str:
    response = await client.post("/jobs", json=body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


async def poll(client: httpx.AsyncClient, job_id: str) -> Any:
    response = await client.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def stats(client: httpx.AsyncClient) -> Any:
    return (await client.get("/admin/stats", headers=ADMIN)).json()


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Short sleeps until ``condition`` holds, giving up after about five seconds."""
    for _ in range(250):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_default_secret_and_retry_schedule() -> None:
    assert DEFAULT_WEBHOOK_SECRET.startswith("whsec_")
    assert len(base64.b64decode(DEFAULT_WEBHOOK_SECRET.removeprefix("whsec_"))) == 32
    assert CALLBACK_RETRY_DELAYS == (0.5, 1.0)  # three attempts


async def test_time_based_job_calls_back_by_itself(
    client: httpx.AsyncClient, service: DemoService, receiver: Receiver
) -> None:
    job_id = await submit(client, work_seconds=0.2, items=[1, 2], callback_url=receiver.url)
    await wait_until(lambda: len(receiver.requests) == 1, "the callback")
    headers, body = receiver.requests[0]
    assert headers["content-type"] == "application/json"
    assert verify(DEFAULT_WEBHOOK_SECRET, headers, body) == headers["webhook-id"]
    with pytest.raises(SignatureError):
        verify(new_secret(), headers, body)
    sent = json.loads(body)
    assert sent == {
        "id": job_id,
        "status": "succeeded",
        "progress": 100,
        "result": {"output": "processed 1 items", "input": {"items": [1, 2]}},
    }
    # Exactly what a poll shows, and observing the job again does not call back again.
    assert await poll(client, job_id) == sent
    await wait_until(lambda: service.state.callbacks_sent == 1, "the delivery to be counted")
    assert service.state.callback_tasks == set()
    assert len(receiver.requests) == 1
    current = await stats(client)
    assert current["callbacks_sent"] == 1 and current["callbacks_failed"] == 0
    assert current["jobs"][job_id]["polls"] == 1


async def test_poll_based_job_calls_back_on_its_ending_poll(
    client: httpx.AsyncClient, service: DemoService, receiver: Receiver
) -> None:
    job_id = await submit(client, work_polls=1, callback_url=receiver.url)
    assert service.state.callback_tasks == set()  # no timer: only a poll ends it
    assert receiver.requests == []
    polled = await poll(client, job_id)
    assert polled["status"] == "succeeded"
    await wait_until(lambda: len(receiver.requests) == 1, "the callback")
    assert receiver.bodies() == [polled]
    verify(DEFAULT_WEBHOOK_SECRET, *receiver.requests[0])
    await poll(client, job_id)
    await wait_until(lambda: service.state.callbacks_sent == 1, "the delivery to be counted")
    assert len(receiver.requests) == 1


async def test_cancel_calls_back_cancelled(client: httpx.AsyncClient, service: DemoService, receiver: Receiver) -> None:
    by_polls = await submit(client, work_polls=5, callback_url=receiver.url)
    await poll(client, by_polls)
    cancelled = (await client.post(f"/jobs/{by_polls}/cancel")).json()
    assert cancelled == {"id": by_polls, "status": "cancelled", "progress": 20}
    await wait_until(lambda: len(receiver.requests) == 1, "the callback")
    assert receiver.bodies() == [cancelled]

    # A time-based job's pending wake-up is dropped with the cancel.
    by_time = await submit(client, work_seconds=1000, callback_url=receiver.url)
    assert len(service.state.callback_tasks) == 1
    assert (await client.post(f"/jobs/{by_time}/cancel")).status_code == 200
    await wait_until(lambda: len(receiver.requests) == 2, "the second callback")
    assert receiver.bodies()[1] == {"id": by_time, "status": "cancelled", "progress": 0}
    await wait_until(lambda: not service.state.callback_tasks, "the pending tasks to finish")
    assert service.state.callbacks_sent == 2


async def test_fail_knob_calls_back_failed(client: httpx.AsyncClient, service: DemoService, receiver: Receiver) -> None:
    job_id = await submit(client, work_seconds=0.05, fail="out of paper", callback_url=receiver.url)
    await wait_until(lambda: len(receiver.requests) == 1, "the callback")
    assert receiver.bodies() == [{"id": job_id, "status": "failed", "progress": 100, "error": "out of paper"}]
    verify(DEFAULT_WEBHOOK_SECRET, *receiver.requests[0])


async def test_callback_drop_sends_nothing(client: httpx.AsyncClient, service: DemoService, receiver: Receiver) -> None:
    job_id = await submit(client, work_seconds=0.1, callback_url=receiver.url, callback_drop=True)
    assert service.state.callback_tasks == set()
    await asyncio.sleep(0.4)  # the job's end plus a margin
    assert (await poll(client, job_id))["status"] == "succeeded"
    polled_job = await submit(client, work_polls=1, callback_url=receiver.url, callback_drop=True)
    assert (await poll(client, polled_job))["status"] == "succeeded"
    await asyncio.sleep(0.1)
    assert receiver.requests == []
    current = await stats(client)
    assert current["callbacks_sent"] == 0 and current["callbacks_failed"] == 0


async def test_unreachable_callback_url_is_retried_then_counted_failed(
    client: httpx.AsyncClient, service: DemoService
) -> None:
    job_id = await submit(client, work_polls=1, callback_url=f"http://127.0.0.1:{free_port()}/hook")
    assert (await poll(client, job_id))["status"] == "succeeded"
    await wait_until(lambda: service.state.callbacks_failed == 1, "the callback to be given up")
    assert service.state.callback_attempts == 3
    current = await stats(client)
    assert current["callbacks_sent"] == 0 and current["callbacks_failed"] == 1
    # The service carries on.
    assert (await poll(client, job_id))["status"] == "succeeded"
    assert (await client.post("/jobs", json={})).status_code == 202


async def test_non_2xx_is_retried_with_the_same_message_id(
    client: httpx.AsyncClient, service: DemoService, receiver: Receiver
) -> None:
    receiver.statuses = [500, 302]
    await submit(client, work_seconds=0, callback_url=receiver.url)
    await wait_until(lambda: service.state.callbacks_sent == 1, "the delivery")
    assert len(receiver.requests) == 3 and service.state.callbacks_failed == 0
    assert len({headers["webhook-id"] for headers, _ in receiver.requests}) == 1
    for headers, body in receiver.requests:
        verify(DEFAULT_WEBHOOK_SECRET, headers, body)

    receiver.statuses = [503, 503, 503]
    await submit(client, work_seconds=0, callback_url=receiver.url)
    await wait_until(lambda: service.state.callbacks_failed == 1, "the callback to be given up")
    assert len(receiver.requests) == 6 and service.state.callbacks_sent == 1


@pytest.mark.parametrize(
    "knobs",
    [
        {"callback_url": "ftp://example.com/hook"},
        {"callback_url": "example.com/hook"},
        {"callback_url": "http://"},
        {"callback_url": "http://example.com:notaport/"},
        {"callback_url": 42},
        {"callback_url": "http://example.com/", "callback_drop": "yes"},
    ],
)
async def test_bad_callback_knobs(client: httpx.AsyncClient, service: DemoService, knobs: dict[str, Any]) -> None:
    response = await client.post("/jobs", json=knobs)
    assert response.status_code == 400 and "callback" in response.json()["error"]
    assert service.state.jobs_created == 0


async def test_callback_knobs_are_not_echoed(client: httpx.AsyncClient, receiver: Receiver) -> None:
    job_id = await submit(client, work_polls=1, callback_url=receiver.url, callback_drop=True, x=1)
    assert (await poll(client, job_id))["result"]["input"] == {"x": 1}


async def test_reset_clears_callback_counters_and_pending_callbacks(
    client: httpx.AsyncClient, service: DemoService, receiver: Receiver
) -> None:
    await submit(client, work_seconds=0, callback_url=receiver.url)
    await wait_until(lambda: service.state.callbacks_sent == 1, "the delivery")
    await submit(client, work_seconds=1000, callback_url=receiver.url)
    assert (await client.post("/admin/reset", headers=ADMIN)).status_code == 200
    current = await stats(client)
    assert current["callbacks_sent"] == 0 and current["callbacks_failed"] == 0
    await wait_until(lambda: not service.state.callback_tasks, "the pending wake-up to be cancelled")


async def test_custom_secret(receiver: Receiver) -> None:
    secret = new_secret()
    async with (
        running_demo_service(webhook_secret=secret) as svc,
        httpx.AsyncClient(base_url=svc.url, headers={"Authorization": "Bearer demo-token"}) as c,
    ):
        await submit(c, work_seconds=0, callback_url=receiver.url)
        await wait_until(lambda: len(receiver.requests) == 1, "the callback")
    headers, body = receiver.requests[0]
    verify(secret, headers, body)
    with pytest.raises(SignatureError):
        verify(DEFAULT_WEBHOOK_SECRET, headers, body)


def test_bad_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("", "whsec_not base64!"):
        with pytest.raises(ValueError):
            create_app(webhook_secret=bad)
    assert parse_args([]).webhook_secret == DEFAULT_WEBHOOK_SECRET
    monkeypatch.setenv("DEMO_WEBHOOK_SECRET", "whsec_" + base64.b64encode(b"k" * 32).decode())
    assert parse_args([]).webhook_secret == "whsec_" + base64.b64encode(b"k" * 32).decode()
    assert parse_args(["--webhook-secret", "plain"]).webhook_secret == "plain"
    with pytest.raises(SystemExit):
        parse_args(["--webhook-secret", "whsec_%%%"])


async def test_shutdown_cancels_pending_callbacks_cleanly(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.hang = True
    caplog.set_level(logging.WARNING)
    async with (
        running_demo_service() as svc,
        httpx.AsyncClient(base_url=svc.url, headers={"Authorization": "Bearer demo-token"}) as c,
    ):
        await submit(c, work_seconds=1000, callback_url=receiver.url)  # a pending wake-up
        await submit(c, work_seconds=0, callback_url=receiver.url)  # a delivery stuck in flight
        await wait_until(lambda: len(receiver.requests) == 1, "the callback to be in flight")
        assert len(svc.state.callback_tasks) == 2
    assert svc.state.callback_tasks == set() and svc.state.http is None
    assert svc.state.callbacks_sent == 0 and svc.state.callbacks_failed == 0
    assert [r for r in caplog.records if r.name.startswith("asyncio")] == []
