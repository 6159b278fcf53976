"""The workflow tests' own fixture: no run outlives its test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from temporalio.service import RPCError

from tests.workflows._support import _started


@pytest.fixture(autouse=True)
async def no_leftover_workflows() -> AsyncIterator[None]:
    """Terminate what a (failed) test left running: the time-skipping server does not skip time while a run
    that no worker serves has a workflow task due, so one leftover run would stall every later test."""
    yield
    while _started:
        with contextlib.suppress(RPCError):  # already closed: nothing to do
            await _started.pop().terminate(reason="test over")
