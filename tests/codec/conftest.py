"""Codec fixtures: keys, a codec-aware converter and client on the real dev server, helpers to inspect histories."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

from longjobs import EncryptionCodec, new_key
from longjobs._codec import parse_keys
from longjobs.codec_server import build_app

MARKER = "PLAINTEXT-MARKER-123"
SIGNAL_MARKER = "SIGNAL-MARKER-456"
RESULT_TEXT = "processed"


@pytest.fixture(scope="session")
def keys_setting() -> str:
    """A LONGJOBS_CODEC_KEYS value: an active key and an older one (rotation), both fresh for this run."""
    return f"{new_key('active')},{new_key('older')}"


@pytest.fixture(scope="session")
def codec(keys_setting: str) -> EncryptionCodec:
    return EncryptionCodec(parse_keys(keys_setting))


@pytest.fixture(scope="session")
def codec_converter(codec: EncryptionCodec) -> DataConverter:
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec)


@pytest.fixture(scope="session")
async def codec_client(dev_env: WorkflowEnvironment, codec_converter: DataConverter) -> Client:
    """A client of the dev server that encrypts (the test's own: the fixture's client has no codec)."""
    return await Client.connect(
        dev_env.client.service_client.config.target_host, namespace="default", data_converter=codec_converter
    )


@pytest.fixture(scope="session")
async def plain_client(dev_env: WorkflowEnvironment) -> Client:
    """A client without the codec: what the Temporal server (and anyone reading its database) sees."""
    return await Client.connect(
        dev_env.client.service_client.config.target_host, namespace="default", data_converter=pydantic_data_converter
    )


@asynccontextmanager
async def running_codec_server(codec: EncryptionCodec, **options: Any) -> AsyncIterator[str]:
    """The codec server app on a free loopback port, in this event loop; yields its base URL."""
    from aiohttp import web

    runner = web.AppRunner(build_app(codec, **options), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()




def payloads_in(message: Message) -> list[Payload]:
    """Every ``Payload`` anywhere inside a proto message (fields, repeated fields and map values)."""
    found: list[Payload] = []

    def walk(node: Message) -> None:
        if isinstance(node, Payload):
            found.append(node)
            return
        for field, value in node.ListFields():
            if field.type != field.TYPE_MESSAGE:
                continue
            if field.message_type.GetOptions().map_entry:
                value_field = field.message_type.fields_by_name["value"]
                if value_field.type == value_field.TYPE_MESSAGE:
                    for item in value.values():
                        walk(item)
            elif isinstance(value, Message):
                walk(value)
            else:
                for item in value:
                    walk(item)

    walk(message)
    return found
