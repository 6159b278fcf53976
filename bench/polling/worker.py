"""One contender's worker process: ``python -m bench.polling.worker --contender project|minimal|dbos ...``.

The runner starts it, reads its JSON lines on stdout (``{"event": "ready"}``; DBOS also ``{"event":
"started"}`` once it has started its loops), reads its CPU time and peak memory from /proc, and ends it with
SIGTERM (it leaves at once: the run is over, nothing needs to drain).

- ``project``: ``longjobs.new_worker`` (the project's workflow and activities, pydantic data converter).
- ``minimal``: a plain ``temporalio.worker.Worker`` with :mod:`bench.polling.minimal` (SDK defaults).
- ``dbos``: DBOS with a SQLite system database; this process also starts the loops (DBOS is a library).

Both Temporal workers get the same worker options: room in the workflow cache and in activity and local
activity slots for every job (``--max-cached-workflows``, ``--max-concurrent-activities``); everything else
is the SDK's default.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import sys
import time
import traceback
from typing import Any

from bench.polling.common import TOKEN, pace


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def worker_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "max_cached_workflows": args.max_cached_workflows,
        "max_concurrent_activities": args.max_concurrent_activities,
        "max_concurrent_local_activities": args.max_concurrent_activities,
    }


async def run_temporal(args: argparse.Namespace) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    from longjobs import new_http_client

    http = new_http_client()
    worker: Worker
    if args.contender == "project":
        from temporalio.contrib.pydantic import pydantic_data_converter

        from longjobs import new_worker

        client = await Client.connect(args.address, data_converter=pydantic_data_converter)
        worker = new_worker(client, http, task_queue=args.task_queue, environ={"DEMO_API_TOKEN": TOKEN},
                            **worker_options(args))
    else:
        from bench.polling.minimal import MinimalActivities, MinimalPollLoop

        client = await Client.connect(args.address)
        activities = MinimalActivities(http, TOKEN)
        worker = Worker(client, task_queue=args.task_queue, workflows=[MinimalPollLoop], activities=[activities.poll],
                        **worker_options(args))
    async with worker:
        emit("ready")
        await report_loop_lag()


class GcClock:
    """Seconds the cyclic garbage collector ran, per generation (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.counts = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._started
            self.counts[info["generation"]] += 1

    def take(self) -> str:
        text = ", ".join(f"gen{g} {self.seconds[g]:.2f} s / {self.counts[g]}" for g in range(3))
        self.seconds, self.counts = [0.0, 0.0, 0.0], [0, 0, 0]
        return text


async def report_loop_lag() -> None:
    """Every 10 s, the longest the event loop was late to wake a 0.5 s sleep and the time spent in garbage
    collection (stderr, the worker's log)."""
    loop = asyncio.get_running_loop()
    gc_clock = GcClock()
    worst, since = 0.0, loop.time()
    while True:
        before = loop.time()
        await asyncio.sleep(0.5)
        worst = max(worst, loop.time() - before - 0.5)
        if loop.time() - since >= 10:
            print(f"event loop lag, worst in 10 s: {worst:.2f} s; gc: {gc_clock.take()}", file=sys.stderr,
                  flush=True)
            worst, since = 0.0, loop.time()


async def run_dbos(args: argparse.Namespace) -> None:
    from bench.polling import dbos_loop

    ids = [f"{args.id_prefix}-{i:05d}" for i in range(args.jobs)]
    emit("ready")
    started = time.monotonic()

    async def paced(count: int, start: Any) -> None:
        await pace(count, start, rate=args.start_rate, concurrency=args.start_concurrency)

    await dbos_loop.run(db_path=args.db, api_url=args.api_url, token=TOKEN, ids=ids, interval=args.interval,
                        pace=paced)
    emit("started", seconds=round(time.monotonic() - started, 2))
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contender", choices=["project", "minimal", "dbos"], required=True)
    parser.add_argument("--address", help="Temporal frontend host:port")
    parser.add_argument("--task-queue", default="bench-polling")
    parser.add_argument("--max-cached-workflows", type=int, default=1000)
    parser.add_argument("--max-concurrent-activities", type=int, default=1000)
    parser.add_argument("--api-url", help="the bench job API (DBOS starts its loops itself)")
    parser.add_argument("--db", help="the DBOS SQLite file")
    parser.add_argument("--jobs", type=int, default=0)
    parser.add_argument("--id-prefix", default="bench")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--start-rate", type=float, default=500.0)
    parser.add_argument("--start-concurrency", type=int, default=50)
    args = parser.parse_args()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        # The run is over when the runner says so: leave at once (the SDK can abort at interpreter exit).
        loop.add_signal_handler(signal.SIGTERM, lambda: (sys.stdout.flush(), os._exit(0)))
        await (run_dbos(args) if args.contender == "dbos" else run_temporal(args))

    try:
        asyncio.run(run())
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(1)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
