"""The metrics tests' fixtures: a free port for each Prometheus endpoint, and no run outliving its test."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
from temporalio.service import RPCError

from tests.workflows._support import _started


def free_port() -> int:
    """A loopback port nobody listens on right now (each metrics runtime binds its own, for good)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture(autouse=True)
async def no_leftover_workflows() -> AsyncIterator[None]:
    """Terminate what a failed test left running (handles started through ``tests.workflows._support.start``)."""
    yield
    while _started:
        with contextlib.suppress(RPCError):  # already closed: nothing to do
            await _started.pop().terminate(reason="test over")
