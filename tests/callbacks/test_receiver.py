"""The callback receiver over real HTTP, signalling a real Temporal server (the dev server).

Each test starts a tiny recording workflow, drives the receiver with httpx, then finishes the workflow and checks
exactly which ``callback`` signals it received (by its result and by a query).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio import workflow
from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    SignalWorkflowInput,
    WorkflowHandle,
)
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from callbacks import (
    ReceiverSettings,
    callback_token,
    callback_url,
    new_secret,
    running_receiver,
    sign,
    signed_headers,
)
from longjobs import UserError
from tests.conftest import register_secret, unique_id

ROOT = Path(__file__).resolve().parents[2]
SECRET = register_secret("callback-url-secret-7d1e")
SIGNING_SECRET = register_secret(new_secret())
BEARER = "callback-bearer-51aa"


@workflow.defn(name="tests.callbacks.CallbackRecorder")
class CallbackRecorder:
    """Records every ``callback`` signal; ``finish`` ends it, returning what it recorded."""

    def __init__(self) -> None:
        self._received: list[dict[str, Any]] = []
        self._done = False

    @workflow.run
    async def run(self) -> list[dict[str, Any]]:
        await workflow.wait_condition(lambda: self._done)
        return self._received

    @workflow.signal(name="callback")
    def callback(self, payload: dict[str, Any]) -> None:
        self._received.append(payload)

    @workflow.signal
    def finish(self) -> None:
        self._done = True

    @workflow.query
    def received(self) -> list[dict[str, Any]]:
        return self._received


Recorder = WorkflowHandle[CallbackRecorder, list[dict[str, Any]]]


@pytest.fixture
def client(dev_env: WorkflowEnvironment) -> Client:
    # The dev server, not the time-skipping one: waiting for one recorder's result there skips time until the
    # other recorders of the test time out.
    return dev_env.client


@pytest.fixture
async def worker(client: Client, task_queue: str) -> AsyncIterator[Worker]:
    # Unsandboxed: the recorder is test scaffolding, and this module imports things the sandbox need not vet.
    async with Worker(
        client, task_queue=task_queue, workflows=[CallbackRecorder], workflow_runner=UnsandboxedWorkflowRunner()
    ) as running:
        yield running


@pytest.fixture
def start(client: Client, worker: Worker, task_queue: str) -> Callable[[], Awaitable[Recorder]]:
    async def start_recorder() -> Recorder:
        return await client.start_workflow(CallbackRecorder.run, id=unique_id("cb"), task_queue=task_queue)

    return start_recorder


async def received(handle: Recorder) -> list[dict[str, Any]]:
    """Finish the workflow and return every callback it got (the result and the query must agree)."""
    await handle.signal(CallbackRecorder.finish)
    result = await handle.result()
    assert await handle.query(CallbackRecorder.received) == result
    return result


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http_client:
        yield http_client


def settings(**overrides: Any) -> ReceiverSettings:
    return ReceiverSettings(token_secret=SECRET, **overrides)


def signed(body: bytes, **kwargs: Any) -> dict[str, str]:
    return {**signed_headers(SIGNING_SECRET, body, **kwargs), "Content-Type": "application/json"}


async def post(
    http: httpx.AsyncClient, base_url: str, workflow_id: str, content: Any, headers: dict[str, str] | None = None,
    *, token: str | None = None,
) -> httpx.Response:
    url = callback_url(base_url, SECRET, workflow_id)
    if token is not None:
        url = url.split("?", 1)[0] + (f"?token={token}" if token else "")
    return await http.post(url, content=content, headers=headers or {})


# --- signed callbacks ------------------------------------------------------------------------------------------


async def test_valid_signed_callback_is_one_signal(
    client: Client, start: Callable[[], Awaitable[Recorder]], http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    handle = await start()
    body = json.dumps({"status": "succeeded", "result": {"rows": 3}}).encode()
    headers = signed(body, msg_id="msg_valid_1")
    caplog.set_level(logging.INFO, logger="callbacks.receiver")
    async with running_receiver(client, settings(signing_secret=SIGNING_SECRET)) as receiver:
        assert receiver.url.startswith("http://127.0.0.1:")
        before = datetime.now(UTC)
        response = await post(http, receiver.url, handle.id, body, headers)
        assert response.status_code == 202 and response.json() == {"accepted": True}
    [got] = await received(handle)
    assert got["body"] == {"status": "succeeded", "result": {"rows": 3}}
    assert got["webhook_id"] == "msg_valid_1"
    stamp = datetime.fromisoformat(got["received_at"])
    assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert abs((stamp - before).total_seconds()) < 30
    # One log line: the workflow and the outcome, never the token, the signature or the body.
    lines = [r.getMessage() for r in caplog.records if r.name == "callbacks.receiver"]
    assert len(lines) == 1 and handle.id in lines[0] and "202" in lines[0]
    for secret_part in (callback_token(SECRET, handle.id), headers["webhook-signature"], "succeeded", "rows"):
        assert secret_part not in caplog.text


async def test_forged_stale_and_unsigned_callbacks_are_refused(
    client: Client, start: Callable[[], Awaitable[Recorder]], http: httpx.AsyncClient
) -> None:
    handle = await start()
    body = b'{"status": "succeeded"}'
    forged = signed_headers(new_secret(), body)
    tampered = signed(b'{"status": "failed"}')  # signed for another body
    stale = signed(body, timestamp=int(time.time()) - 600)
    future = signed(body, timestamp=int(time.time()) + 600)
    bad_stamp = {**signed(body), "webhook-timestamp": "soon"}
    partial = {k: v for k, v in signed(body).items() if k != "webhook-signature"}
    async with running_receiver(client, settings(signing_secret=SIGNING_SECRET)) as receiver:
        for headers in (forged, tampered, stale, future, bad_stamp, partial, {"Content-Type": "application/json"}):
            response = await post(http, receiver.url, handle.id, body, headers)
            assert response.status_code == 401, headers
            assert "error" in response.json()
    assert await received(handle) == []


async def test_replayed_webhook_id_is_refused(
    client: Client, start: Callable[[], Awaitable[Recorder]], http: httpx.AsyncClient
) -> None:
    handle = await start()
    body = b'{"n": 1}'
    headers = signed(body)
    concurrent = signed(b'{"n": 2}')
    async with running_receiver(client, settings(signing_secret=SIGNING_SECRET)) as receiver:
        assert (await post(http, receiver.url, handle.id, body, headers)).status_code == 202
        again = await post(http, receiver.url, handle.id, body, headers)
        assert again.status_code == 401 and "replayed" in again.json()["error"]
        # Two copies of one message at the same time: exactly one gets through.
        copies = (post(http, receiver.url, handle.id, b'{"n": 2}', concurrent) for _ in range(2))
        answers = await asyncio.gather(*copies)
        assert sorted(a.status_code for a in answers) == [202, 401]
    got = await received(handle)
    assert [g["body"] for g in got] == [{"n": 1}, {"n": 2}]
    assert [g["webhook_id"] for g in got] == [headers["webhook-id"], concurrent["webhook-id"]]


async def test_oversized_body_is_413(
    client: Client, start: Callable[[], Awaitable[Recorder]], http: httpx.AsyncClient
) -> None:
    handle = await start()
    big = json.dumps({"pad": "x" * 2000}).encode()

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the limit holds while reading
        for start_at in range(0, len(big), 256):
            yield big[start_at : start_at + 256]

    async with running_receiver(client, settings(signing_secret=SIGNING_SECRET, max_body_bytes=1000)) as receiver:
        response = await post(http, receiver.url, handle.id, big, signed(big))
        assert response.status_code == 413 and "error" in response.json()
        response = await post(http, receiver.url, handle.id, chunked(), signed(big))
        assert response.status_code == 413 and "error" in response.json()
        small = b'{"ok": true}'
        assert (await post(http, receiver.url, handle.id, small, signed(small))).status_code == 202
    assert [g["body"] for g in await received(handle)] == [{"ok": True}]


async def test_signal_failure_is_503_and_the_retry_is_accepted(
    client: Client, start: Callable[[], Awaitable[Recorder]], http: httpx.AsyncClient
) -> None:
    """Temporal refusing the signal (here: UNAVAILABLE, injected once) is a 503, and the id is not burnt."""

    class FailOnce(Interceptor):
        failures = 1

        def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
            outer = self

            class Outbound(OutboundInterceptor):
                async def signal_workflow(self, input: SignalWorkflowInput) -> None:
                    if outer.failures:
                        outer.failures -= 1
                        raise RPCError("injected: frontend unavailable", RPCStatusCode.UNAVAILABLE, b"")
                    await super().signal_workflow(input)

            return Outbound(next)

    config = client.config()
    config["interceptors"] = [FailOnce()]
    flaky = Client(**config)
    handle = await start()
    body = b'{"attempt": "retried"}'
    headers = signed(body)
    async with running_receiver(flaky, settings(signing_secret=SIGNING_SECRET)) as receiver:
        first = await post(http, receiver.url, handle.id, body, headers)
        assert first.status_code == 503 and "error" in first.json()
        assert (await post(http, receiver.url, handle.id, body, headers)).status_code == 202
    assert [g["body"] for g in await received(handle)] == [{"attempt": "retried"}]


async def test_missing_namespace_is_503_not_404(
    client: Client, start: Callable[[], Awaitable[Recorder]], http: httpx.AsyncClient
) -> None:
    """A receiver pointed at a namespace that does not exist is misconfigured: the sender must retry, not give up."""
    handle = await start()
    misconfigured = Client(client.service_client, namespace=f"no-such-namespace-{uuid.uuid4().hex[:8]}")
    async with running_receiver(misconfigured, settings()) as receiver:
        response = await post(http, receiver.url, handle.id, b"{}")
    assert response.status_code == 503 and "error" in response.json()
    assert await received(handle) == []


# --- tokens, bearer, bodies, workflow states -------------------------------------------------------------------


async def test_bad_tokens_are_401(
    client: Client, start: Callable[[], Awaitable[Recorder]], http: httpx.AsyncClient
) -> None:
    handle = await start()
    other = await start()
    async with running_receiver(client, settings()) as receiver:
        for token in ("", "0" * 40, callback_token("another-secret", handle.id), callback_token(SECRET, other.id),
                      "é" * 40):
            response = await post(http, receiver.url, handle.id, b"{}", token=token)
            assert response.status_code == 401 and "error" in response.json(), token
    assert await received(handle) == []
    assert await received(other) == []


async def test_bearer_mode(client: Client, start: Callable[[], Awaitable[Recorder]], http: httpx.AsyncClient) -> None:
    handle = await start()
    async with running_receiver(client, settings(bearer_token=BEARER)) as receiver:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": BEARER}):
            response = await post(http, receiver.url, handle.id, b'{"n": 0}', headers)
            assert response.status_code == 401 and "error" in response.json(), headers
        response = await post(http, receiver.url, handle.id, b'{"n": 1}', {"Authorization": f"Bearer {BEARER}"})
        assert response.status_code == 202
    [got] = await received(handle)
    assert got["body"] == {"n": 1} and got["webhook_id"] is None


async def test_signed_and_bearer_together(
    client: Client, start: Callable[[], Awaitable[Recorder]], http: httpx.AsyncClient
) -> None:
    handle = await start()
    body = b'{"both": true}'
    async with running_receiver(client, settings(signing_secret=SIGNING_SECRET, bearer_token=BEARER)) as receiver:
        headers = signed(body)
        assert (await post(http, receiver.url, handle.id, body, headers)).status_code == 401  # no bearer
        # The refusal did not burn the id: the same message with the bearer goes through.
        headers["Authorization"] = f"Bearer {BEARER}"
        assert (await post(http, receiver.url, handle.id, body, headers)).status_code == 202
    assert [g["body"] for g in await received(handle)] == [{"both": True}]


async def test_non_json_body_is_400(
    client: Client, start: Callable[[], Awaitable[Recorder]], http: httpx.AsyncClient
) -> None:
    handle = await start()
    async with running_receiver(client, settings()) as receiver:
        for body in (b"status=done", b"", b'{"a": NaN}', b"\xff\xfe", b'{"a": 1'):
            response = await post(http, receiver.url, handle.id, body)
            assert response.status_code == 400 and "error" in response.json(), body
        # Any JSON value is a body, not only objects.
        assert (await post(http, receiver.url, handle.id, b'["a", 1]')).status_code == 202
    assert [g["body"] for g in await received(handle)] == [["a", 1]]


async def test_unknown_workflow_is_404(client: Client, http: httpx.AsyncClient) -> None:
    async with running_receiver(client, settings()) as receiver:
        response = await post(http, receiver.url, unique_id("nobody"), b"{}")
    assert response.status_code == 404 and "error" in response.json()


async def test_finished_workflow_is_410(
    client: Client, start: Callable[[], Awaitable[Recorder]], http: httpx.AsyncClient
) -> None:
    handle = await start()
    assert await received(handle) == []
    async with running_receiver(client, settings()) as receiver:
        response = await post(http, receiver.url, handle.id, b"{}")
    assert response.status_code == 410 and response.json() == {"error": "workflow already finished"}


async def test_finished_and_unknown_on_the_time_skipping_server(
    time_env: WorkflowEnvironment, task_queue: str, http: httpx.AsyncClient
) -> None:
    """The test server words its NOT_FOUND errors differently from the real one; both must map the same."""
    test_client = time_env.client
    async with Worker(
        test_client, task_queue=task_queue, workflows=[CallbackRecorder], workflow_runner=UnsandboxedWorkflowRunner()
    ):
        handle = await test_client.start_workflow(CallbackRecorder.run, id=unique_id("cb"), task_queue=task_queue)
        async with running_receiver(test_client, settings()) as receiver:
            assert (await post(http, receiver.url, handle.id, b'{"n": 1}')).status_code == 202
            assert [g["body"] for g in await received(handle)] == [{"n": 1}]
            finished = await post(http, receiver.url, handle.id, b"{}")
            unknown = await post(http, receiver.url, unique_id("nobody"), b"{}")
    assert finished.status_code == 410 and finished.json() == {"error": "workflow already finished"}
    assert unknown.status_code == 404 and "error" in unknown.json()


async def test_workflow_ids_that_need_quoting(
    client: Client, worker: Worker, task_queue: str, http: httpx.AsyncClient
) -> None:
    handle = await client.start_workflow(
        CallbackRecorder.run, id=f"orders/42 ?&#%-{uuid.uuid4()}", task_queue=task_queue
    )
    async with running_receiver(client, settings()) as receiver:
        assert (await post(http, receiver.url, handle.id, b'{"q": 1}')).status_code == 202
    assert [g["body"] for g in await received(handle)] == [{"q": 1}]


async def test_healthz(client: Client, http: httpx.AsyncClient) -> None:
    async with running_receiver(client, settings()) as receiver:
        response = await http.get(f"{receiver.url}/healthz")
    assert response.status_code == 200 and response.json() == {"ok": True}


# --- settings ----------------------------------------------------------------------------------------------------


def test_settings_from_environ(tmp_path: Path) -> None:
    with pytest.raises(UserError) as missing:
        ReceiverSettings.from_environ({})
    assert str(missing.value) == (
        "set CALLBACK_SECRET (or CALLBACK_SECRET_FILE): the secret that makes callback URLs unguessable"
    )
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    loaded = ReceiverSettings.from_environ({
        "CALLBACK_SECRET_FILE": str(secret_file),
        "CALLBACK_SIGNING_SECRET": SIGNING_SECRET,
        "CALLBACK_BEARER_TOKEN": BEARER,
        "CALLBACK_MAX_BODY_BYTES": "2048",
    })
    assert loaded == ReceiverSettings(
        token_secret="from-a-file", signing_secret=SIGNING_SECRET, bearer_token=BEARER, max_body_bytes=2048
    )
    assert "from-a-file" not in repr(loaded) and SIGNING_SECRET not in repr(loaded) and BEARER not in repr(loaded)
    plain = ReceiverSettings.from_environ({"CALLBACK_SECRET": "s"})
    assert (plain.signing_secret, plain.bearer_token, plain.max_body_bytes) == (None, None, 1_048_576)
    for bad in ({"CALLBACK_MAX_BODY_BYTES": "lots"}, {"CALLBACK_MAX_BODY_BYTES": "0"},
                {"CALLBACK_SIGNING_SECRET": "whsec_not*base64"}):
        with pytest.raises(UserError):
            ReceiverSettings.from_environ({"CALLBACK_SECRET": "s", **bad})
    assert sign(SIGNING_SECRET, "m", 1, b"x").startswith("v1,")


# --- python -m callbacks -----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def command_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLBACK_", "TEMPORAL_"))}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


async def run_receiver_command(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callbacks", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def test_command_without_secret_or_temporal_exits_2() -> None:
    port = str(free_port())
    no_secret = await run_receiver_command(command_env(), "--port", port)
    unreachable = await run_receiver_command(
        command_env(CALLBACK_SECRET="s", TEMPORAL_ADDRESS="127.0.0.1:1"), "--port", port
    )
    for process, expected in ((no_secret, "CALLBACK_SECRET"), (unreachable, "cannot reach Temporal")):
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
        lines = stderr.decode().strip().splitlines()
        assert process.returncode == 2, stderr
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in lines[0], lines
        assert stdout == b""


async def test_command_serves_and_stops_on_sigterm(
    client: Client, start: Callable[[], Awaitable[Recorder]], http: httpx.AsyncClient
) -> None:
    handle = await start()
    port = free_port()
    env = command_env(CALLBACK_SECRET=SECRET, TEMPORAL_ADDRESS=client.service_client.config.target_host)
    process = await run_receiver_command(env, "--port", str(port))
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line.decode().strip() == f"callback receiver listening on http://127.0.0.1:{port}"
        response = await post(http, f"http://127.0.0.1:{port}", handle.id, b'{"via": "command"}')
        assert response.status_code == 202
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr
    assert b"Traceback" not in stderr and b"outcome=accepted" in stderr
    assert callback_token(SECRET, handle.id).encode() not in stderr
    assert [g["body"] for g in await received(handle)] == [{"via": "command"}]


def test_seen_ids_expire_and_stay_bounded() -> None:
    from callbacks._receiver import _SeenIds

    seen = _SeenIds(cap=3)
    seen.add("a", expires=100.0, now=0.0)
    assert seen.seen("a", now=50.0) and not seen.seen("a", now=100.0) and not seen.seen("b", now=0.0)
    for name, expires in (("b", 300.0), ("c", 200.0), ("d", 400.0)):
        seen.add(name, expires=expires, now=10.0)
    assert sorted(seen.expiry) == ["b", "c", "d"]  # full: the id closest to going stale ("a") made room
    seen.add("e", expires=500.0, now=250.0)  # "c" has expired and is pruned
    assert sorted(seen.expiry) == ["b", "d", "e"]
    seen.discard("d")
    seen.add("d", expires=600.0, now=260.0)  # re-added after a failed delivery: the old heap entry is stale
    seen.add("f", expires=700.0, now=450.0)  # prunes "b" (300) and the stale ("d", 400) entry, which keeps "d"
    assert sorted(seen.expiry) == ["d", "e", "f"] and seen.seen("d", now=450.0)
