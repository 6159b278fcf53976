"""Connecting to Temporal the standard way: env-config profiles and ``TEMPORAL_*`` variables."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"
CONNECT_TIMEOUT_SECONDS = 10.0


class UserError(Exception):
    """Something the user can fix; the message is the one line the command prints before exiting 2."""


def connect_settings() -> dict[str, Any]:
    """Connection keyword arguments from env-config (the profile file, then ``TEMPORAL_*`` variables)."""
    try:
        settings: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    except Exception as exc:  # the loader raises plain errors for a bad TOML file or profile name
        raise UserError(f"cannot read the Temporal client configuration: {exc}") from None
    settings.setdefault("target_host", DEFAULT_ADDRESS)
    settings.setdefault("namespace", DEFAULT_NAMESPACE)
    return settings


async def connect_client() -> Client:
    """Connect with the pydantic data converter (every client and worker of this project must use it).

    With ``LONGJOBS_CODEC_KEYS`` (or ``LONGJOBS_CODEC_KEYS_FILE``) set, payloads are encrypted at rest too.
    """
    from longjobs._codec import codec_from_environ  # here: _codec imports UserError from this module

    settings = connect_settings()
    codec = codec_from_environ()
    converter = pydantic_data_converter
    if codec is not None:
        converter = dataclasses.replace(pydantic_data_converter, payload_codec=codec)
    try:
        return await asyncio.wait_for(
            Client.connect(**settings, data_converter=converter), CONNECT_TIMEOUT_SECONDS
        )
    except TimeoutError:
        raise UserError(f"cannot reach Temporal at {settings['target_host']}: no answer in "
                        f"{CONNECT_TIMEOUT_SECONDS:g}s (is `temporal server start-dev` running?)") from None
    except RuntimeError as exc:
        # The core's message is a nested Rust error; its innermost "message" is the part worth a line.
        found = re.findall(r'message: "([^"]+)"', str(exc))
        reason = found[-1] if found else (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise UserError(f"cannot reach Temporal at {settings['target_host']}: {reason} "
                        "(is `temporal server start-dev` running? set TEMPORAL_ADDRESS to point elsewhere)") from None
