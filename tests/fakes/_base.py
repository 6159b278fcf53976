"""The shared core of the job-API fakes: in-memory state, poll-driven jobs, fault queue, auth and the runner.

Each fake module supplies a :class:`Shape` (its routes and its own style of error body); everything else lives
here. Jobs advance only when their status is read, so a test controls exactly what a client sees.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Literal, get_args

from aiohttp import web
from aiohttp.typedefs import Handler

Outcome = Literal["succeed", "fail"]
FaultKind = Literal["submit", "poll", "cancel", "result", "any"]
RouteKind = Literal["submit", "poll", "cancel", "result"]
Phase = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ErrorFn = Callable[[int, str | None], web.Response]
RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DEFAULT_TOKEN = "fake-token"
_ROUTE_KINDS: frozenset[str] = frozenset(get_args(RouteKind))
_COUNTERS: dict[str, str] = {"submit": "submits", "poll": "polls", "cancel": "cancels", "result": "results"}


class ApiError(Exception):
    """Raised by a handler; answered with the shape's own error body for ``status`` (``message`` optional)."""

    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(message or str(status))
        self.status = status
        self.message = message


@dataclass
class Fault:
    """One queued fault: the next ``times`` requests of ``kind`` get this answer instead of being handled."""

    kind: FaultKind
    status: int
    times: int = 1
    headers: dict[str, str] | None = None
    body: str | None = None


@dataclass
class Job:
    """One job, advanced by status reads: terminal at read number ``polls_to_finish``."""

    id: str
    input: Any
    outcome: Outcome
    polls_to_finish: int
    extra: dict[str, Any] = field(default_factory=dict)  # shape-specific details (names, versions, file ids)
    polls: int = 0  # status reads so far (they keep counting after the end)
    cancelled_after: int | None = None  # the read count when the job was cancelled
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None

    @property
    def phase(self) -> Phase:
        if self.cancelled_after is not None:
            return "cancelled"
        if self.polls >= self.polls_to_finish:
            return "succeeded" if self.outcome == "succeed" else "failed"
        return "running" if self.polls else "queued"

    @property
    def done(self) -> bool:
        return self.phase in ("succeeded", "failed", "cancelled")

    @property
    def progress(self) -> int:
        """0-100: the share of reads done (frozen by a cancel); 100 once succeeded."""
        if self.phase == "succeeded":
            return 100
        reads = self.polls if self.cancelled_after is None else self.cancelled_after
        return min(100, 100 * reads // max(1, self.polls_to_finish))

    def read(self) -> None:
        """Count one status read: this is what drives the job."""
        self.polls += 1
        self._stamp()

    def cancel(self) -> bool:
        """Cancel a job that has not ended; False (and no change) when it already has."""
        if self.done:
            return False
        self.cancelled_after = self.polls
        self._stamp()
        return True

    def _stamp(self) -> None:
        now = time.time()
        if self.phase != "queued" and self.started_at is None and self.cancelled_after is None:
            self.started_at = now
        if self.done and self.ended_at is None:
            self.ended_at = now


@dataclass
class FakeState:
    """Everything one fake holds; tests read and tweak it directly."""

    token: str = DEFAULT_TOKEN
    require_auth: bool = True  # every shape checks `Authorization: Bearer <token>` unless this is False
    polls_to_finish: int = 2  # copied into each new job
    next_outcome: Outcome = "succeed"  # sticky: used for every new job whose input does not ask to fail
    relative_location: bool = False  # ogc-processes: send `Location: /jobs/{id}`
    foreign_location: str | None = None  # ogc-processes: send this absolute URL as Location instead
    jobs: dict[str, Job] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    created: int = 0  # jobs created
    submits: int = 0  # requests per kind, counted before faults and auth
    polls: int = 0
    cancels: int = 0
    results: int = 0

    def fail_next(
        self,
        kind: FaultKind,
        status: int,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests of ``kind`` with ``status``, before auth and before the handler.

        ``body=None`` uses the shape's own error body for that status; ``headers=None`` the shape's usual headers
        for it (e.g. ``Retry-After`` on a 429), while a dict (even ``{}``) replaces them.
        """
        if kind not in (*_ROUTE_KINDS, "any"):
            raise ValueError(f"unknown fault kind {kind!r}")
        if times < 1:
            raise ValueError("times must be positive")
        self.faults.append(Fault(kind, status, times, headers, body))

    def take_fault(self, kind: str) -> Fault | None:
        for fault in self.faults:
            if fault.kind in (kind, "any"):
                fault.times -= 1
                if fault.times == 0:
                    self.faults.remove(fault)
                return fault
        return None

    def add_job(self, job_id: str, job_input: Any, /, *, fail: bool = False, **extra: Any) -> Job:
        """Create and store a job; it fails when ``fail`` or when ``next_outcome`` says so."""
        outcome: Outcome = "fail" if fail else self.next_outcome
        job = Job(job_id, job_input, outcome, self.polls_to_finish, extra=extra)
        job._stamp()  # polls_to_finish=0 means it is over already
        self.jobs[job_id] = job
        self.created += 1
        return job

    def job(self, job_id: str, not_found: str | None = None) -> Job:
        """The job, or :class:`ApiError` 404 with ``not_found`` as the message."""
        if (job := self.jobs.get(job_id)) is None:
            raise ApiError(404, not_found)
        return job

    def reset(self) -> None:
        """Forget jobs, faults and counters; keep the token and the toggles."""
        self.jobs.clear()
        self.faults.clear()
        self.created = self.submits = self.polls = self.cancels = self.results = 0


STATE_KEY = web.AppKey("fake_state", FakeState)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: RouteHandler
    kind: RouteKind


@dataclass(frozen=True)
class Shape:
    """One API shape: its routes and its error body for a status (``message`` overrides the default text)."""

    name: str
    error: ErrorFn
    routes: tuple[Route, ...]


def state_of(request: web.Request) -> FakeState:
    return request.app[STATE_KEY]


def origin(request: web.Request) -> str:
    """This server's absolute origin as the client addressed it, e.g. ``http://127.0.0.1:4711``."""
    return f"{request.scheme}://{request.host}"


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def rfc3339(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def read_json(request: web.Request) -> Any:
    """The request body as JSON (``None`` when empty); :class:`ApiError` 400 when it is not JSON."""
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"invalid JSON body: {exc}") from None


def _fault_response(fault: Fault, default: web.Response) -> web.Response:
    if fault.body is None:
        text, content_type = default.text or "", default.headers.get("Content-Type", "application/json")
    else:
        text = fault.body
        try:
            json.loads(text)
            content_type = "application/json"
        except ValueError:
            content_type = "text/plain; charset=utf-8"
    if fault.headers is None:
        headers = {k: v for k, v in default.headers.items() if k.lower() not in ("content-type", "content-length")}
    else:
        headers = dict(fault.headers)
    if not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = content_type
    return web.Response(status=fault.status, body=text.encode(), headers=headers)


def _authorized(request: web.Request, token: str) -> bool:
    given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, f"Bearer {token}".encode())


def create_app(shape: Shape, state: FakeState) -> web.Application:
    @web.middleware
    async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        kind = request.match_info.route.name
        if kind in _ROUTE_KINDS:
            counter = _COUNTERS[kind]
            setattr(state, counter, getattr(state, counter) + 1)
            if (fault := state.take_fault(kind)) is not None:
                return _fault_response(fault, shape.error(fault.status, None))
            if state.require_auth and not _authorized(request, state.token):
                return shape.error(401, None)
        try:
            return await handler(request)
        except ApiError as exc:
            return shape.error(exc.status, exc.message)

    app = web.Application(middlewares=[gate])
    app[STATE_KEY] = state
    for route in shape.routes:
        app.router.add_route(route.method, route.path, route.handler, name=route.kind)
    return app


@dataclass(frozen=True)
class RunningFake:
    """A running fake: ``url`` is ``http://127.0.0.1:PORT``; ``state`` is live."""

    kind: str
    url: str
    state: FakeState
    app: web.Application


@contextlib.asynccontextmanager
async def serve(shape: Shape, *, token: str = DEFAULT_TOKEN) -> AsyncIterator[RunningFake]:
    """Serve ``shape`` on a free loopback port for the duration of the ``async with`` block."""
    state = FakeState(token=token)
    app = create_app(shape, state)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield RunningFake(kind=shape.name, url=f"http://127.0.0.1:{port}", state=state, app=app)
    finally:
        await runner.cleanup()
