"""Small in-memory aiohttp fakes of public job APIs, for conformance tests of the spec presets.

    async with running_fake("replicate") as fake:
        fake.url, fake.state  # http://127.0.0.1:PORT, the live FakeState

Jobs advance only when their status is read (terminal at read ``state.polls_to_finish``, default 2), and
``state.fail_next(...)`` queues faults; see :mod:`tests.fakes._base`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Literal

from . import google_lro, ogc_processes, openai_batch, ray_jobs, replicate
from ._base import DEFAULT_TOKEN, FakeState, Fault, Job, RunningFake, Shape, serve

FakeKind = Literal["ogc-processes", "google-lro", "replicate", "openai-batch", "ray-jobs"]
SHAPES: dict[str, Shape] = {
    shape.name: shape
    for shape in (ogc_processes.SHAPE, google_lro.SHAPE, replicate.SHAPE, openai_batch.SHAPE, ray_jobs.SHAPE)
}


@contextlib.asynccontextmanager
async def running_fake(kind: FakeKind, *, token: str = DEFAULT_TOKEN) -> AsyncIterator[RunningFake]:
    """Run the fake of API shape ``kind`` on a free loopback port for the duration of the block."""
    if kind not in SHAPES:
        raise ValueError(f"unknown fake {kind!r}; expected one of {', '.join(SHAPES)}")
    async with serve(SHAPES[kind], token=token) as fake:
        yield fake


__all__ = ["DEFAULT_TOKEN", "SHAPES", "FakeKind", "FakeState", "Fault", "Job", "RunningFake", "running_fake"]
