"""The demo job service: an aiohttp application imitating a slow external job API, with fault injection.

Everything lives in memory in one :class:`DemoState` per application, so a test can start a service, drive it
over real HTTP and then inspect ``service.state`` directly.

A job submitted with a ``callback_url`` is announced there once it ends: a POST of the job's JSON (as
``GET /jobs/{id}`` shows it), signed the Standard Webhooks way with the service's webhook secret.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import logging
import math
import socket
import struct
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from callbacks._signing import SECRET_PREFIX, signed_headers

logger = logging.getLogger(__name__)

DEFAULT_TOKEN = "demo-token"
DEFAULT_ADMIN_KEY = "demo-admin"
DEFAULT_WORK_SECONDS = 3.0
# A fixed, public demo value: callbacks of the demo service are verifiable out of the box, and secret to no one.
DEFAULT_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"longjobs-demo-webhook-secret-32b").decode()
# Pauses between callback delivery attempts: three attempts in all.
CALLBACK_RETRY_DELAYS = (0.5, 1.0)
CALLBACK_TIMEOUT_SECONDS = 5.0

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FaultMatch = Literal["submit", "poll", "cancel", "any"]
_KNOBS = frozenset({"work_seconds", "work_polls", "fail", "callback_url", "callback_drop"})
_FAULT_KEYS = frozenset(
    {"match", "status", "times", "retry_after", "delay_seconds", "body", "reset", "trickle_seconds"}
)


class BadRequest(ValueError):
    """A request body the service refuses with 400; the message becomes the ``error`` field."""


@dataclass
class Job:
    """One submitted job. Its progress is derived lazily from the clock or from its poll count."""

    id: str
    input: dict[str, Any]
    work_seconds: float
    work_polls: int | None
    fail: str | None
    idempotency_key: str | None
    created: float = field(default_factory=time.monotonic)
    polls: int = 0
    # Set once the job has ended, so an ended job never changes again (and a cancel can get a 409).
    final: tuple[JobStatus, int] | None = None
    callback_url: str | None = None
    callback_drop: bool = False
    # Called once when the job ends (its outcome frozen or cancelled); the service uses it to call back.
    on_end: Callable[[Job], None] | None = field(default=None, repr=False, compare=False)
    # The pending wake-up of a time-based job that calls back, so it can end without anyone polling.
    timer: asyncio.Task[None] | None = field(default=None, repr=False, compare=False)

    @property
    def end_time(self) -> float:
        """When (``time.monotonic()``) a time-based job's work is complete."""
        return self.created + self.work_seconds

    def observe(self) -> tuple[JobStatus, int]:
        """Return ``(status, progress)`` now, freezing the outcome the first time the work is complete."""
        if self.final is not None:
            return self.final
        now = self._progress_now()
        if now[0] in ("succeeded", "failed"):
            self._end(now)
        return now

    def cancel(self) -> None:
        """Mark the job cancelled, keeping the progress it had reached."""
        if self.final is not None:
            self.final = ("cancelled", self.final[1])  # ended already, so it has called back already
        else:
            self._end(("cancelled", self._progress_now()[1]))

    def _progress_now(self) -> tuple[JobStatus, int]:
        """Where the work is now, without freezing anything."""
        if self.work_polls is not None:
            if self.polls == 0:
                return "queued", 0
            if self.polls < self.work_polls:
                return "running", 100 * self.polls // self.work_polls
        else:
            elapsed = time.monotonic() - self.created
            if elapsed < self.work_seconds:
                fraction = elapsed / self.work_seconds
                # The first tenth looks queued, like a real API that has not picked the job up yet.
                return ("queued", 0) if fraction < 0.1 else ("running", min(99, int(fraction * 100)))
        return ("failed" if self.fail is not None else "succeeded"), 100

    def _end(self, final: tuple[JobStatus, int]) -> None:
        self.final = final
        if self.on_end is not None:
            self.on_end(self)

    def stats(self) -> dict[str, Any]:
        """The job's entry in ``GET /admin/stats``."""
        return {"idempotency_key": self.idempotency_key, "polls": self.polls, "status": self.observe()[0]}

    def to_json(self) -> dict[str, Any]:
        """The job as the API shows it."""
        status, progress = self.observe()
        out: dict[str, Any] = {"id": self.id, "status": status, "progress": progress}
        if status == "succeeded":
            out["result"] = {"output": f"processed {len(self.input)} items", "input": self.input}
        elif status == "failed":
            out["error"] = self.fail
        return out


@dataclass
class Fault:
    """One queued fault (``POST /admin/faults``), consumed once per matching request until ``times`` runs out.

    The faulted request is answered with ``status`` and ``body`` (default: a JSON error object), plus a verbatim
    ``Retry-After`` header when ``retry_after`` is set; ``delay_seconds`` waits first, ``trickle_seconds``
    spreads the body over that long, and ``reset`` drops the connection instead of answering.
    """

    match: FaultMatch
    status: int
    times: int = 1
    retry_after: str | None = None
    delay_seconds: float = 0.0
    body: str | None = None
    reset: bool = False
    trickle_seconds: float = 0.0

    @classmethod
    def from_json(cls, data: object) -> Fault:
        """Validate an admin request body; raises :class:`BadRequest` on anything unexpected."""
        if not isinstance(data, dict):
            raise BadRequest("fault must be a JSON object")
        # Typos in a fault spec would silently never fire, so unknown keys are refused.
        if unknown := sorted(set(data) - _FAULT_KEYS):
            raise BadRequest(f"unknown fault fields: {', '.join(unknown)}")
        match = data.get("match")
        if match not in ("submit", "poll", "cancel", "any"):
            raise BadRequest("match must be one of submit, poll, cancel, any")
        reset = data.get("reset", False)
        if not isinstance(reset, bool):
            raise BadRequest("reset must be a boolean")
        status = data.get("status", 500 if reset else None)
        if not _is_int(status) or not 200 <= status <= 599:
            raise BadRequest("status must be an integer between 200 and 599")
        times = data.get("times", 1)
        if not _is_int(times) or times < 1:
            raise BadRequest("times must be a positive integer")
        for name in ("retry_after", "body"):
            if data.get(name) is not None and not isinstance(data[name], str):
                raise BadRequest(f"{name} must be a string")
        return cls(
            match=match,
            status=status,
            times=times,
            retry_after=data.get("retry_after"),
            delay_seconds=_seconds(data, "delay_seconds", 0.0),
            body=data.get("body"),
            reset=reset,
            trickle_seconds=_seconds(data, "trickle_seconds", 0.0),
        )


@dataclass
class DemoState:
    """All mutable state of one service instance: the accepted credentials, jobs, counters and faults.

    Callbacks go out through ``http``, the application's shared client session (set while the application
    runs); without it a job's callback counts as failed at once. ``callback_retry_delays`` are the pauses
    between delivery attempts (one attempt more than pauses); tests may shorten them.
    """

    token: str = DEFAULT_TOKEN
    admin_key: str = DEFAULT_ADMIN_KEY
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    jobs: dict[str, Job] = field(default_factory=dict)
    jobs_by_idempotency_key: dict[str, str] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    jobs_created: int = 0
    submit_requests: int = 0
    poll_requests: int = 0
    cancel_requests: int = 0
    callbacks_sent: int = 0
    callbacks_failed: int = 0
    # Every POST made to a callback URL, successful or not (not part of the stats document).
    callback_attempts: int = 0
    callback_retry_delays: tuple[float, ...] = CALLBACK_RETRY_DELAYS
    http: aiohttp.ClientSession | None = field(default=None, repr=False)
    # Pending wake-ups and deliveries, cancelled on reset and on shutdown.
    callback_tasks: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    def reset(self) -> None:
        """Forget all jobs, counters, faults and pending callbacks (the credentials are kept)."""
        for task in self.callback_tasks:
            task.cancel()
        self.jobs.clear()
        self.jobs_by_idempotency_key.clear()
        self.faults.clear()
        self.jobs_created = self.submit_requests = self.poll_requests = self.cancel_requests = 0
        self.callbacks_sent = self.callbacks_failed = self.callback_attempts = 0

    async def close_callbacks(self) -> None:
        """Stop sending callbacks: cancel the pending ones and wait until they have wound down."""
        self.http = None
        while self.callback_tasks:
            tasks = list(self.callback_tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def take_fault(self, kind: str) -> Fault | None:
        """Consume one use of the first queued fault matching ``kind`` (submit, poll or cancel), if any."""
        for fault in self.faults:
            if fault.match in (kind, "any"):
                fault.times -= 1
                if fault.times == 0:
                    self.faults.remove(fault)
                return fault
        return None

    def submit(self, body: object, idempotency_key: str | None) -> Job:
        """Create a job from a request body, or return the job already created under ``idempotency_key``."""
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        work_seconds = _seconds(body, "work_seconds", DEFAULT_WORK_SECONDS)
        work_polls = body.get("work_polls")
        if work_polls is not None and (not _is_int(work_polls) or work_polls < 0):
            raise BadRequest("work_polls must be a non-negative integer")
        fail = body.get("fail")
        if fail is not None and not isinstance(fail, str):
            raise BadRequest("fail must be a string")
        callback_url = body.get("callback_url")
        if callback_url is not None and not _is_http_url(callback_url):
            raise BadRequest("callback_url must be an http or https URL")
        callback_drop = body.get("callback_drop", False)
        if not isinstance(callback_drop, bool):
            raise BadRequest("callback_drop must be a boolean")
        if idempotency_key is not None and idempotency_key in self.jobs_by_idempotency_key:
            return self.jobs[self.jobs_by_idempotency_key[idempotency_key]]
        job = Job(
            id=f"job_{uuid.uuid4().hex[:12]}",
            input={k: v for k, v in body.items() if k not in _KNOBS},
            work_seconds=work_seconds,
            work_polls=work_polls,
            fail=fail,
            idempotency_key=idempotency_key,
            callback_url=callback_url,
            callback_drop=callback_drop,
        )
        self.jobs[job.id] = job
        if idempotency_key is not None:
            self.jobs_by_idempotency_key[idempotency_key] = job.id
        self.jobs_created += 1
        if callback_url is not None and not callback_drop:
            job.on_end = self._job_ended
            if work_polls is None:
                # Nobody has to poll a time-based job for it to end, and call back, on time.
                job.timer = self._spawn(self._wake(job))
        return job

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
        if self.http is None:
            coro.close()
            return None
        task = asyncio.get_running_loop().create_task(coro)
        self.callback_tasks.add(task)
        task.add_done_callback(self.callback_tasks.discard)
        return task

    async def _wake(self, job: Job) -> None:
        """End a time-based job when its time is up (``observe()`` freezes it and so calls back)."""
        # The extra millisecond keeps a timer that fires a hair early from finding the work unfinished.
        await asyncio.sleep(max(0.0, job.end_time - time.monotonic()) + 0.001)
        job.observe()

    def _job_ended(self, job: Job) -> None:
        """Send the callback of a job that has just ended (called exactly once per job, by the job)."""
        if job.timer is not None and job.timer is not _current_task():
            job.timer.cancel()
        job.timer = None
        if job.callback_url is None or job.callback_drop:
            return
        # The body is taken now, at the moment the job ends, as a poll would show it.
        body = json.dumps(job.to_json()).encode()
        if self._spawn(self._deliver(job.callback_url, body)) is None:
            self.callbacks_failed += 1  # not running: there is no one to send it

    async def _deliver(self, url: str, body: bytes) -> None:
        """POST one signed callback, retrying connection errors and non-2xx answers; count the outcome."""
        session = self.http
        assert session is not None  # _spawn only runs this while the application runs
        msg_id = f"msg_{uuid.uuid4().hex[:24]}"  # one id for all attempts, so a receiver can deduplicate
        for attempt in range(len(self.callback_retry_delays) + 1):
            if attempt:
                await asyncio.sleep(self.callback_retry_delays[attempt - 1])
            headers = {"Content-Type": "application/json", **signed_headers(self.webhook_secret, body, msg_id=msg_id)}
            self.callback_attempts += 1
            try:
                async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                    if 200 <= response.status < 300:
                        self.callbacks_sent += 1
                        return
                    problem = f"HTTP {response.status}"
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            logger.info("callback to %s failed (attempt %d): %s", url, attempt + 1, problem)
        logger.warning("callback to %s given up after %d attempts", url, len(self.callback_retry_delays) + 1)
        self.callbacks_failed += 1

    def stats(self) -> dict[str, Any]:
        """The ``GET /admin/stats`` document."""
        return {
            "jobs_created": self.jobs_created,
            "submit_requests": self.submit_requests,
            "poll_requests": self.poll_requests,
            "cancel_requests": self.cancel_requests,
            "callbacks_sent": self.callbacks_sent,
            "callbacks_failed": self.callbacks_failed,
            "jobs": {job.id: job.stats() for job in self.jobs.values()},
        }


STATE_KEY = web.AppKey("demo_service_state", DemoState)


def _is_int(value: object) -> TypeGuard[int]:
    # bool is an int subclass, but `true` is never a sensible count or status.
    return isinstance(value, int) and not isinstance(value, bool)


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running event loop
        return None


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _seconds(data: dict[str, Any], name: str, default: float) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise BadRequest(f"{name} must be a non-negative number")
    return float(value)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _read_json(request: web.Request) -> object:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"invalid JSON: {exc}") from None


def _state(request: web.Request) -> DemoState:
    return request.app[STATE_KEY]


async def _inject(request: web.Request, fault: Fault) -> web.StreamResponse:
    """Answer a request the way ``fault`` says instead of handling it."""
    if fault.delay_seconds:
        await asyncio.sleep(fault.delay_seconds)
    if fault.reset and request.transport is not None:
        # SO_LINGER 0 makes the close a real TCP RST rather than a polite FIN, like a crashed upstream.
        sock = request.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        request.transport.abort()
        # aiohttp treats the failure to write this response as a client disconnect and stays quiet.
        return web.Response(status=fault.status)
    body = (fault.body if fault.body is not None else json.dumps({"error": "injected fault"})).encode()
    headers = {"Content-Type": "application/json"}
    if fault.retry_after is not None:
        headers["Retry-After"] = fault.retry_after
    if not fault.trickle_seconds:
        return web.Response(status=fault.status, body=body, headers=headers)
    response = web.StreamResponse(status=fault.status, headers=headers)
    response.content_length = len(body)
    await response.prepare(request)
    chunks = max(1, min(20, len(body)))
    size = math.ceil(len(body) / chunks)
    try:
        for start in range(0, len(body), size):
            await response.write(body[start : start + size])
            await asyncio.sleep(fault.trickle_seconds / chunks)
    except ConnectionError:
        pass  # the client gave up mid-body; nothing left to do
    return response


@web.middleware
async def _gatekeeper(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count, fault-inject and authenticate job requests; check the admin key on admin requests."""
    kind = request.match_info.route.name
    state = _state(request)
    if kind is not None and kind.startswith("admin"):
        if not hmac.compare_digest(request.headers.get("X-Admin-Key", ""), state.admin_key):
            return _error(403, "bad admin key")
    elif kind in ("submit", "poll", "cancel"):
        # Counted before anything else, so faulted and unauthorized requests show up in the stats too.
        if kind == "submit":
            state.submit_requests += 1
        elif kind == "poll":
            state.poll_requests += 1
        else:
            state.cancel_requests += 1
        if (fault := state.take_fault(kind)) is not None:
            return await _inject(request, fault)
        if not hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {state.token}"):
            return _error(401, "invalid or missing token")
    try:
        return await handler(request)
    except BadRequest as exc:
        return _error(400, str(exc))


async def _submit(request: web.Request) -> web.Response:
    state = _state(request)
    created_before = state.jobs_created
    job = state.submit(await _read_json(request), request.headers.get("Idempotency-Key"))
    # A new job is always reported queued; an idempotent replay reports where the existing job really is.
    status = "queued" if state.jobs_created > created_before else job.observe()[0]
    return web.json_response({"id": job.id, "status": status}, status=202, headers={"Location": f"/jobs/{job.id}"})


async def _poll(request: web.Request) -> web.Response:
    job = _state(request).jobs.get(request.match_info["job_id"])
    if job is None:
        return _error(404, "no such job")
    job.polls += 1
    return web.json_response(job.to_json())


async def _cancel(request: web.Request) -> web.Response:
    job = _state(request).jobs.get(request.match_info["job_id"])
    if job is None:
        return _error(404, "no such job")
    status, _ = job.observe()
    if status in ("succeeded", "failed", "cancelled"):
        return _error(409, f"job already {status}")
    job.cancel()
    return web.json_response(job.to_json())


async def _admin_token(request: web.Request) -> web.Response:
    body = await _read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("token"), str) or not body["token"]:
        raise BadRequest('body must be {"token": "<non-empty string>"}')
    _state(request).token = body["token"]
    return web.json_response({"ok": True})


async def _admin_add_fault(request: web.Request) -> web.Response:
    _state(request).faults.append(Fault.from_json(await _read_json(request)))
    return web.json_response({"ok": True})


async def _admin_clear_faults(request: web.Request) -> web.Response:
    _state(request).faults.clear()
    return web.json_response({"ok": True})


async def _admin_stats(request: web.Request) -> web.Response:
    return web.json_response(_state(request).stats())


async def _admin_reset(request: web.Request) -> web.Response:
    _state(request).reset()
    return web.json_response({"ok": True})


async def _callback_client(app: web.Application) -> AsyncIterator[None]:
    """The one client session all callbacks share, open while the application runs (a ``cleanup_ctx``)."""
    state = app[STATE_KEY]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT_SECONDS)) as session:
        state.http = session
        try:
            yield
        finally:
            # Pending callbacks are cancelled and awaited before the session closes under them.
            await state.close_callbacks()


def check_webhook_secret(secret: str) -> None:
    """Raise ``ValueError`` unless ``secret`` can sign (``whsec_`` + base64, or any other non-empty string)."""
    if not secret:
        raise ValueError("the webhook secret must not be empty")
    if secret.startswith(SECRET_PREFIX):
        try:
            key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
        except ValueError:
            key = b""
        if not key:
            raise ValueError(f"a webhook secret starting with {SECRET_PREFIX} must continue with a base64 key")


def create_app(
    *, token: str = DEFAULT_TOKEN, admin_key: str = DEFAULT_ADMIN_KEY, webhook_secret: str = DEFAULT_WEBHOOK_SECRET
) -> web.Application:
    """Build the demo job service application; its state is ``app[STATE_KEY]``.

    ``webhook_secret`` signs the callbacks (Standard Webhooks); a malformed one raises ``ValueError``.
    """
    check_webhook_secret(webhook_secret)
    # Generous body limit so a fault can carry a huge response body (aiohttp's default is 1 MiB).
    app = web.Application(middlewares=[_gatekeeper], client_max_size=64 * 1024 * 1024)
    app[STATE_KEY] = DemoState(token=token, admin_key=admin_key, webhook_secret=webhook_secret)
    app.cleanup_ctx.append(_callback_client)
    # Route names double as the fault `match` kinds and the admin marker used by the middleware.
    app.router.add_post("/jobs", _submit, name="submit")
    app.router.add_get("/jobs/{job_id}", _poll, name="poll", allow_head=False)
    app.router.add_post("/jobs/{job_id}/cancel", _cancel, name="cancel")
    app.router.add_post("/admin/token", _admin_token, name="admin-token")
    app.router.add_post("/admin/faults", _admin_add_fault, name="admin-add-fault")
    app.router.add_delete("/admin/faults", _admin_clear_faults, name="admin-clear-faults")
    app.router.add_get("/admin/stats", _admin_stats, name="admin-stats", allow_head=False)
    app.router.add_post("/admin/reset", _admin_reset, name="admin-reset")
    return app


async def start_runner(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving ``app`` on ``host:port`` and return the runner and the bound port (useful with port 0).

    Raises ``OSError`` (after cleaning up) when the address cannot be bound.
    """
    # handler_cancellation drops handlers whose client went away (e.g. a delay fault after a client
    # timeout), so shutting down never waits for them; the short shutdown_timeout bounds the rest.
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=2.0, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]


def service_url(host: str, port: int) -> str:
    """The base URL of a service bound to ``host:port``."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"  # IPv6 literals need []


@dataclass(frozen=True)
class DemoService:
    """A running demo service, as yielded by :func:`running_demo_service`."""

    url: str
    host: str
    port: int
    state: DemoState
    app: web.Application


@contextlib.asynccontextmanager
async def running_demo_service(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str = DEFAULT_TOKEN,
    admin_key: str = DEFAULT_ADMIN_KEY,
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET,
) -> AsyncIterator[DemoService]:
    """Run the demo service in the current event loop for the duration of the ``async with`` block.

    The default ``port=0`` binds a free port; read the real one from ``service.url`` / ``service.port``.
    """
    app = create_app(token=token, admin_key=admin_key, webhook_secret=webhook_secret)
    runner, bound_port = await start_runner(app, host, port)
    try:
        yield DemoService(url=service_url(host, bound_port), host=host, port=bound_port, state=app[STATE_KEY], app=app)
    finally:
        await runner.cleanup()
