"""Reading a spec's credential at call time: from a file (re-read on every call) or an environment variable."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path

from jobspec import AuthSpec


class CredentialMissing(Exception):
    """No credential could be read; the message names where it was looked for, never a value."""


def read_secret(auth: AuthSpec, environ: Mapping[str, str]) -> str:
    """Return the secret, re-reading the file every time so a fixed file takes effect on the next call."""
    looked: list[str] = []
    file_path: str | None = None
    if auth.secret_file_env:
        looked.append(f"the file named by ${auth.secret_file_env}")
        file_path = environ.get(auth.secret_file_env) or None
    if file_path is None and auth.secret_file:
        looked.append(f"the file {auth.secret_file}")
        file_path = auth.secret_file
    if file_path is not None:
        try:
            secret = Path(file_path).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CredentialMissing(f"cannot read credential file {file_path}: {exc.strerror}") from None
        if not secret:
            raise CredentialMissing(f"credential file {file_path} is empty")
        return secret
    if auth.secret_env:
        looked.append(f"${auth.secret_env}")
        secret = environ.get(auth.secret_env, "").strip()
        if secret:
            return secret
    raise CredentialMissing("no credential found; set " + " or ".join(looked))


def auth_headers(auth: AuthSpec, environ: Mapping[str, str]) -> tuple[dict[str, str], str | None]:
    """Headers that authenticate one request, and the secret (so messages can be scrubbed of it)."""
    if auth.type == "none":
        return {}, None
    try:
        secret = read_secret(auth, environ)
    except CredentialMissing:
        if auth.optional:
            return {}, None  # a server that may run without auth: try without, a 401 still pauses the job
        raise
    if auth.type == "bearer":
        return {"Authorization": f"Bearer {secret}"}, secret
    if auth.type == "basic":
        # The secret is "user:password", as curl's -u takes it.
        return {"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()}, secret
    return {auth.header: secret}, secret
