"""Standard Webhooks signatures and per-workflow callback tokens.

Standard Webhooks (standardwebhooks.com): the sender signs ``{webhook-id}.{webhook-timestamp}.{body}`` with
HMAC-SHA256 under a shared secret (``whsec_`` + base64 key) and sends ``webhook-signature: v1,<base64>``
(several, space-separated, during key rotation). The receiver recomputes, compares in constant time, refuses
timestamps outside a tolerance and ids it has seen.

A callback URL names its workflow and carries a token, an HMAC of the workflow id under the receiver's
secret: only someone who was given the URL can signal that workflow, and the receiver needs no table of
issued URLs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

TOLERANCE_SECONDS = 5 * 60
SECRET_PREFIX = "whsec_"


class SignatureError(Exception):
    """The webhook's proof is missing, wrong, stale or replayed; the message says which (for logs, not callers)."""


def new_secret() -> str:
    """A fresh Standard Webhooks secret."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret[len(SECRET_PREFIX):])
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message."""
    digest = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    secret: str, body: bytes, *, msg_id: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``."""
    msg_id = msg_id or f"msg_{secrets.token_hex(12)}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: float = TOLERANCE_SECONDS,
) -> str:
    """Check a Standard Webhooks signature; return the message id (for replay checks) or raise SignatureError."""
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not stamp or not signatures:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError("webhook-timestamp outside the tolerance")
    expected = sign(secret, msg_id, timestamp, body).split(",", 1)[1]
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return msg_id
    raise SignatureError("no valid v1 signature")


def callback_token(secret: str, workflow_id: str) -> str:
    """The unguessable token of one workflow's callback URL."""
    return hmac.new(secret.encode(), f"callback:{workflow_id}".encode(), hashlib.sha256).hexdigest()[:40]


def token_matches(secret: str, workflow_id: str, token: str) -> bool:
    return hmac.compare_digest(callback_token(secret, workflow_id), token)


def callback_url(base_url: str, secret: str, workflow_id: str) -> str:
    """Where an API should POST this workflow's callbacks."""
    token = callback_token(secret, workflow_id)
    return f"{base_url.rstrip('/')}/callbacks/{quote(workflow_id, safe='')}?token={token}"


def read_secret_setting(environ: Mapping[str, str], name: str) -> str | None:
    """A secret from ``NAME`` or from the file named by ``NAME_FILE`` (read now, so rotation takes effect)."""
    file_name = environ.get(f"{name}_FILE")
    if file_name:
        try:
            value = Path(file_name).expanduser().read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return value or None
    return environ.get(name) or None

