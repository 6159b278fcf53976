"""Encryption at rest: an AES-256-GCM payload codec, with key ids so keys can rotate.

Every payload the SDK stores in Temporal (workflow inputs and results, activity inputs and results, signal, query
and update arguments, activity summaries) goes through the client's data converter; with this codec on it is
stored as::

    metadata: {"encoding": "binary/encrypted", "encryption-key-id": "<id>"}
    data:     12-byte random nonce + AES-256-GCM(key, nonce, original Payload.SerializeToString())

Keys come from ``LONGJOBS_CODEC_KEYS`` (or a file named by ``LONGJOBS_CODEC_KEYS_FILE``): comma-separated
``id:base64key`` entries of 32-byte keys. The first entry encrypts; every entry decrypts. To rotate, prepend a new
key and keep the old ones for as long as any history (or a running workflow) still holds payloads encrypted with
them. Payloads that are not encrypted pass through decoding unchanged, so histories written before the codec was
turned on stay readable.

Not encrypted (Temporal never passes them through a codec): workflow ids, workflow and activity type names, task
queues, search attributes (this project only upserts ``JobState`` and ``JobApi``) and failure messages and stack
traces.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from longjobs._connection import UserError

KEYS_ENV = "LONGJOBS_CODEC_KEYS"
KEYS_FILE_ENV = "LONGJOBS_CODEC_KEYS_FILE"

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16

_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class CodecError(UserError):
    """A codec setting that cannot be used, or a payload that cannot be decrypted (one line, never key material)."""


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over whole serialized payloads; the first key encrypts, all keys decrypt."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("EncryptionCodec needs at least one key")
        self._ciphers: dict[str, AESGCM] = {}
        for key_id, key in keys:
            if not _KEY_ID.fullmatch(key_id):
                raise ValueError(f"invalid key id {key_id!r}: use 1-64 of A-Z a-z 0-9 . _ - (not starting with . _ -)")
            if key_id in self._ciphers:
                raise ValueError(f"key id {key_id!r} appears twice")
            if len(key) != KEY_SIZE:
                raise ValueError(f"key {key_id!r} is {len(key)} bytes; AES-256 needs {KEY_SIZE}")
            self._ciphers[key_id] = AESGCM(key)
        self.active_key_id = keys[0][0]
        self._active = self._ciphers[self.active_key_id]

    @property
    def key_ids(self) -> list[str]:
        """Every key id this codec decrypts, the active (encrypting) one first."""
        return list(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(payload) for payload in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_SIZE)
        sealed = self._active.encrypt(nonce, payload.SerializeToString(), None)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: self.active_key_id.encode()},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written without the codec (or before it was on): readable as it is
        raw_id = payload.metadata.get(KEY_ID_METADATA)
        if raw_id is None:
            raise CodecError(f"an encrypted payload has no {KEY_ID_METADATA} metadata: cannot tell which key to use")
        key_id = raw_id.decode("utf-8", errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise CodecError(
                f"a payload is encrypted with key id {key_id!r}, which is not among the configured keys "
                f"({', '.join(self._ciphers)}): add that key to {KEYS_ENV} (after the active one)"
            )
        if len(payload.data) < NONCE_SIZE + TAG_SIZE:
            raise CodecError(f"an encrypted payload (key id {key_id!r}) is too short to be genuine")
        nonce, sealed = payload.data[:NONCE_SIZE], payload.data[NONCE_SIZE:]
        try:
            plain = cipher.decrypt(nonce, sealed, None)
        except InvalidTag:
            raise CodecError(
                f"cannot decrypt a payload with key id {key_id!r}: authentication failed "
                "(the key under that id is not the one it was encrypted with, or the data was altered)"
            ) from None
        try:
            return Payload.FromString(plain)
        except DecodeError:
            raise CodecError(f"a payload decrypted with key id {key_id!r} is not a Temporal payload") from None


def parse_keys(text: str, *, source: str = KEYS_ENV) -> list[tuple[str, bytes]]:
    """``id:base64key`` entries separated by commas or newlines (``#`` starts a comment line); never shows a key."""
    lines = (line for line in text.splitlines() if not line.lstrip().startswith("#"))
    entries = [entry.strip() for line in lines for entry in line.split(",") if entry.strip()]
    if not entries:
        raise CodecError(f"{source} holds no keys: expected comma-separated id:base64key entries")
    keys: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        key_id, colon, encoded = (part.strip() for part in entry.partition(":"))
        if not colon or not key_id or not encoded:
            raise CodecError(f"{source}: entry {number} is not id:base64key")
        if not _KEY_ID.fullmatch(key_id):
            raise CodecError(f"{source}: entry {number} has an invalid key id {key_id!r} "
                             "(use 1-64 of A-Z a-z 0-9 . _ -, not starting with . _ -)")
        if key_id in seen:
            raise CodecError(f"{source}: key id {key_id!r} appears twice")
        seen.add(key_id)
        try:
            key = base64.b64decode(encoded.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise CodecError(f"{source}: the key for id {key_id!r} is not valid base64") from None
        if len(key) != KEY_SIZE:
            raise CodecError(f"{source}: the key for id {key_id!r} is {len(key)} bytes; AES-256 needs {KEY_SIZE} "
                             "(make one with: python -m longjobs.codec_server --new-key)")
        keys.append((key_id, key))
    return keys


def codec_from_environ(environ: Mapping[str, str] | None = None) -> EncryptionCodec | None:
    """The codec ``LONGJOBS_CODEC_KEYS`` or ``LONGJOBS_CODEC_KEYS_FILE`` configures; ``None`` when neither is set."""
    environ = os.environ if environ is None else environ
    inline = environ.get(KEYS_ENV, "").strip()
    file_name = environ.get(KEYS_FILE_ENV, "").strip()
    if inline and file_name:
        raise CodecError(f"set only one of {KEYS_ENV} and {KEYS_FILE_ENV}")
    if file_name:
        try:
            text = Path(file_name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise CodecError(f"cannot read {KEYS_FILE_ENV} ({file_name}): {reason}") from None
        return EncryptionCodec(parse_keys(text, source=f"{KEYS_FILE_ENV} ({file_name})"))
    if inline:
        return EncryptionCodec(parse_keys(inline))
    return None


def new_key(key_id: str | None = None) -> str:
    """A fresh ``id:base64key`` entry (a random 32-byte key; the id defaults to ``k`` + today's date + a suffix)."""
    if key_id is None:
        key_id = f"k{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(2)}"
    if not _KEY_ID.fullmatch(key_id):
        raise CodecError(f"invalid key id {key_id!r}: use 1-64 of A-Z a-z 0-9 . _ - (not starting with . _ -)")
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_SIZE)).decode()}"
