"""The callback receiver: an aiohttp application that turns verified webhook callbacks into workflow signals.

``POST /callbacks/{workflow_id}?token=T`` signals ``workflow_id`` with the signal ``callback`` and one argument,
``{"body": <parsed JSON>, "webhook_id": <webhook-id header or None>, "received_at": <ISO-8601 UTC>}``.

Checks, in order, each failure answering ``{"error": "..."}`` and signalling nothing:

1. the URL token must be the workflow's (:func:`callbacks.token_matches`), else 401;
2. the body must fit ``max_body_bytes`` (by Content-Length, and again while reading), else 413;
3. with a signing secret, a valid Standard Webhooks signature within the tolerance and a webhook id not accepted
   before (within the tolerance window), else 401;
4. with a bearer token, ``Authorization: Bearer <it>``, else 401;
5. the body must be JSON, else 400.

Then the signal: 202 when Temporal took it, 410 when the workflow already finished, 404 when there is no such
workflow, 503 for any other trouble (so the sender retries later).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from callbacks._signing import TOLERANCE_SECONDS, SignatureError, read_secret_setting, sign, token_matches, verify

logger = logging.getLogger("callbacks.receiver")

SIGNAL_NAME = "callback"
DEFAULT_MAX_BODY_BYTES = 1_048_576
MAX_REMEMBERED_IDS = 100_000
# A sender that starts a body must finish it in this time (a trickling client must not hold a handler forever).
BODY_TIMEOUT_SECONDS = 30.0
SIGNAL_TIMEOUT = timedelta(seconds=10)
# Temporal words "already finished" differently by server ("workflow execution already completed" on the real
# one, "Completed workflow" on the time-skipping one); a missing namespace is also a NOT_FOUND.
_FINISHED = re.compile(r"\b(completed|finished|closed)\b", re.IGNORECASE)
_NO_NAMESPACE = re.compile(r"\bnamespace\b[^{}=]*\bnot found\b", re.IGNORECASE)


@dataclass(frozen=True)
class ReceiverSettings:
    """What the receiver accepts.

    ``token_secret`` makes callback URLs unguessable (see :func:`callbacks.callback_url`); ``signing_secret``
    (``whsec_...``), when set, makes a valid Standard Webhooks signature mandatory; ``bearer_token``, when set,
    makes ``Authorization: Bearer <it>`` mandatory.
    """

    token_secret: str
    signing_secret: str | None = None
    bearer_token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    tolerance_seconds: int = TOLERANCE_SECONDS

    def __post_init__(self) -> None:
        if not self.token_secret:
            raise ValueError("token_secret must not be empty")
        if self.max_body_bytes < 1:
            raise ValueError("max_body_bytes must be a positive integer")
        if self.tolerance_seconds < 1:
            raise ValueError("tolerance_seconds must be a positive integer")
        if self.signing_secret is not None:
            try:
                sign(self.signing_secret, "probe", 0, b"")  # a bad whsec_ key fails here, not on the first callback
            except ValueError:
                raise ValueError("signing_secret is not a valid whsec_ secret (whsec_ + base64)") from None
        if self.bearer_token is not None and not self.bearer_token:
            raise ValueError("bearer_token must not be empty (use None to turn bearer checks off)")

    def __repr__(self) -> str:
        # Secrets never appear in logs or tracebacks.
        return (
            f"ReceiverSettings(token_secret=***, signing_secret={'***' if self.signing_secret else None}, "
            f"bearer_token={'***' if self.bearer_token else None}, max_body_bytes={self.max_body_bytes}, "
            f"tolerance_seconds={self.tolerance_seconds})"
        )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ReceiverSettings:
        """Read ``CALLBACK_SECRET``, ``CALLBACK_SIGNING_SECRET``, ``CALLBACK_BEARER_TOKEN`` and
        ``CALLBACK_MAX_BODY_BYTES`` (each also as ``NAME_FILE``); raises ``longjobs.UserError`` on bad settings."""
        # Imported here: longjobs' worker mounts this receiver, so a module-level import could be circular.
        from longjobs._connection import UserError

        token_secret = read_secret_setting(environ, "CALLBACK_SECRET")
        if not token_secret:
            raise UserError(
                "set CALLBACK_SECRET (or CALLBACK_SECRET_FILE): the secret that makes callback URLs unguessable"
            )
        max_body = read_secret_setting(environ, "CALLBACK_MAX_BODY_BYTES")
        max_body_bytes = DEFAULT_MAX_BODY_BYTES
        if max_body is not None:
            try:
                max_body_bytes = int(max_body)
            except ValueError:
                max_body_bytes = 0
            if max_body_bytes < 1:
                raise UserError(f"CALLBACK_MAX_BODY_BYTES must be a positive integer, not {max_body!r}")
        try:
            return cls(
                token_secret=token_secret,
                signing_secret=read_secret_setting(environ, "CALLBACK_SIGNING_SECRET"),
                bearer_token=read_secret_setting(environ, "CALLBACK_BEARER_TOKEN"),
                max_body_bytes=max_body_bytes,
            )
        except ValueError as exc:
            raise UserError(f"bad callback receiver setting: {exc}") from None


@dataclass
class _SeenIds:
    """Webhook ids accepted recently: a dict id -> expiry plus a heap of (expiry, id), bounded and expiring."""

    cap: int = MAX_REMEMBERED_IDS
    expiry: dict[str, float] = field(default_factory=dict)
    heap: list[tuple[float, str]] = field(default_factory=list)

    def seen(self, msg_id: str, now: float) -> bool:
        expires = self.expiry.get(msg_id)
        return expires is not None and expires > now

    def add(self, msg_id: str, expires: float, now: float) -> None:
        self._prune(now)
        while len(self.expiry) >= self.cap and self.heap:
            self._pop()  # full of live ids: forget the one closest to going stale anyway
        self.expiry[msg_id] = expires
        heapq.heappush(self.heap, (expires, msg_id))

    def discard(self, msg_id: str) -> None:
        self.expiry.pop(msg_id, None)  # its heap entry becomes stale and is skipped when popped

    def _prune(self, now: float) -> None:
        while self.heap and self.heap[0][0] <= now:
            self._pop()
        if len(self.heap) > 2 * self.cap:  # too many stale entries left by discard/re-add: rebuild
            self.heap = [(expires, msg_id) for msg_id, expires in self.expiry.items()]
            heapq.heapify(self.heap)

    def _pop(self) -> None:
        expires, msg_id = heapq.heappop(self.heap)
        if self.expiry.get(msg_id) == expires:
            del self.expiry[msg_id]


@dataclass
class _Receiver:
    client: Client
    settings: ReceiverSettings
    seen_ids: _SeenIds = field(default_factory=_SeenIds)


_RECEIVER_KEY = web.AppKey("callbacks_receiver", _Receiver)


class _Refused(Exception):
    """A callback answered with an error status; ``outcome`` is the log word, ``message`` the ``error`` field."""

    def __init__(self, status: int, outcome: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome
        self.message = message


def _ascii_equal(given: str, expected: str) -> bool:
    """Constant-time equality that also refuses (instead of raising on) non-ASCII input."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


def _token_ok(secret: str, workflow_id: str, token: str) -> bool:
    if not token or not token.isascii():
        return False
    try:
        return token_matches(secret, workflow_id, token)
    except UnicodeEncodeError:  # a workflow id no client could have been given a URL for
        return False


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise _Refused(413, "too-large", f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
            while chunk := await request.content.readany():
                size += len(chunk)
                if size > limit:
                    raise _Refused(413, "too-large", f"body larger than {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise _Refused(408, "slow-body", "body not received in time") from None
    return b"".join(chunks)


def _check_signature(receiver: _Receiver, headers: Mapping[str, str], body: bytes, now: float) -> str:
    """Verify the Standard Webhooks signature and remember the id; return it (or raise :class:`_Refused`)."""
    settings = receiver.settings
    assert settings.signing_secret is not None
    if not all(headers.get(name, "").isascii() for name in ("webhook-id", "webhook-timestamp", "webhook-signature")):
        raise _Refused(401, "bad-signature", "invalid webhook signature")
    try:
        msg_id = verify(settings.signing_secret, headers, body, now=now, tolerance=settings.tolerance_seconds)
    except SignatureError as exc:
        logger.debug("signature refused: %s", exc)
        raise _Refused(401, "bad-signature", "invalid webhook signature") from None
    if receiver.seen_ids.seen(msg_id, now):
        raise _Refused(401, "replayed", "replayed webhook-id")
    # Remembered now, before the signal's await, so a concurrent copy of the same message is refused. The
    # signature covers the timestamp, so a copy is only valid until timestamp + tolerance: remember it that long.
    stamp = int(headers["webhook-timestamp"])
    receiver.seen_ids.add(msg_id, max(stamp, now) + settings.tolerance_seconds + 1, now)
    return msg_id


def _parse_json(body: bytes) -> Any:
    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(body, parse_constant=refuse_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _Refused(400, "bad-json", "body is not JSON") from None


async def _signal(receiver: _Receiver, workflow_id: str, payload: dict[str, Any]) -> None:
    try:
        await receiver.client.get_workflow_handle(workflow_id).signal(
            SIGNAL_NAME, payload, rpc_timeout=SIGNAL_TIMEOUT
        )
    except RPCError as exc:
        # The message may quote the workflow id, which could itself contain a word like "completed".
        message = exc.message.replace(workflow_id, "")
        # A missing namespace is the receiver's misconfiguration, not the sender's mistake: fall through to 503.
        if exc.status == RPCStatusCode.NOT_FOUND and not _NO_NAMESPACE.search(message):
            if _FINISHED.search(message):
                raise _Refused(410, "finished", "workflow already finished") from None
            raise _Refused(404, "not-found", "no such workflow") from None
        logger.warning("callback for %r: signal failed: %s %s", workflow_id, exc.status.name, exc.message)
        raise _Refused(503, "temporal-error", "cannot deliver the callback now, retry later") from None
    except Exception as exc:  # a timeout, a dropped connection: the sender should retry, not see a 500
        logger.warning("callback for %r: signal failed: %s: %s", workflow_id, type(exc).__name__, exc)
        raise _Refused(503, "temporal-error", "cannot deliver the callback now, retry later") from None


async def _handle_callback(request: web.Request) -> web.Response:
    receiver = request.app[_RECEIVER_KEY]
    settings = receiver.settings
    workflow_id = request.match_info["workflow_id"]
    msg_id: str | None = None
    try:
        token = request.query.get("token", "")
        if not _token_ok(settings.token_secret, workflow_id, token):
            raise _Refused(401, "bad-token", "invalid or missing callback token")
        body = await _read_body(request, settings.max_body_bytes)
        now = time.time()
        if settings.signing_secret is not None:
            msg_id = _check_signature(receiver, request.headers, body, now)
        if settings.bearer_token is not None and not _ascii_equal(
            request.headers.get("Authorization", ""), f"Bearer {settings.bearer_token}"
        ):
            raise _Refused(401, "bad-bearer", "invalid or missing bearer token")
        payload = {
            "body": _parse_json(body),
            "webhook_id": request.headers.get("webhook-id"),
            "received_at": datetime.fromtimestamp(now, UTC).isoformat(),
        }
        await _signal(receiver, workflow_id, payload)
    except _Refused as refused:
        if msg_id is not None and refused.outcome != "replayed":
            # Not delivered: a retry of this very message must be accepted, so forget its id again.
            receiver.seen_ids.discard(msg_id)
        logger.info("callback workflow_id=%r outcome=%s status=%d", workflow_id, refused.outcome, refused.status)
        return web.json_response({"error": refused.message}, status=refused.status)
    logger.info("callback workflow_id=%r outcome=accepted status=202", workflow_id)
    return web.json_response({"accepted": True}, status=202)


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def create_receiver_app(client: Client, settings: ReceiverSettings) -> web.Application:
    """Build the receiver application: ``POST /callbacks/{workflow_id}?token=T`` and ``GET /healthz``."""
    app = web.Application()
    app[_RECEIVER_KEY] = _Receiver(client=client, settings=settings)
    app.router.add_post("/callbacks/{workflow_id}", _handle_callback, name="callback")
    app.router.add_get("/healthz", _healthz, name="healthz", allow_head=False)
    return app


@dataclass(frozen=True)
class RunningReceiver:
    """A receiver being served, as yielded by :func:`running_receiver`; ``url`` is its base URL."""

    url: str
    host: str
    port: int
    app: web.Application


def _base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"  # IPv6 literals need []


async def start_receiver(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port``; return the runner and the bound port. Raises ``OSError`` if it cannot bind."""
    # No handler cancellation: a signal under way finishes even if its sender hangs up, so the remembered
    # webhook id always matches what was delivered. The shutdown timeout bounds how long that may take.
    runner = web.AppRunner(app, shutdown_timeout=15.0, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]


@contextlib.asynccontextmanager
async def running_receiver(
    client: Client, settings: ReceiverSettings, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningReceiver]:
    """Serve the receiver in the current event loop for the ``async with`` block (port 0 picks a free port)."""
    app = create_receiver_app(client, settings)
    runner, bound_port = await start_receiver(app, host, port)
    try:
        yield RunningReceiver(url=_base_url(host, bound_port), host=host, port=bound_port, app=app)
    finally:
        await runner.cleanup()
