"""The bench job API: a tiny aiohttp server in the demo service's JSON shape that records when each job is polled.

``python -m bench.polling.api --port 0 --token T`` prints one JSON line ``{"port": P}`` once it listens.

Every contender polls it the same way (``GET /jobs/{id}`` with a bearer token), so polls per second and the
lateness of polls are measured in one place, outside every contender's process, by one clock. A job is always
``running``; its progress stays 0 unless ``progress_per_poll`` is set (then it rises by that many percent per
poll, up to 99, so the ``activity`` poll mode returns to its workflow at every 10% step).

``POST /jobs`` answers the job id: the workflow id when the ``Idempotency-Key`` is longjobs' own
(``longjobs:<workflow id>:<run id>``), so the project's jobs are polled as ``/jobs/<workflow id>`` like the
other contenders', which poll their workflow id directly.

Admin routes (no auth): ``POST /admin/reset {"interval": S, "progress_per_poll": P}`` forgets everything;
``GET /admin/stats`` counts polls and jobs polled; ``POST /admin/window/start`` opens the measurement window
and ``POST /admin/window/stop {"sample": [ids]}`` closes it and answers the polls in it, the lateness of each
poll in it (the gap since the job's previous poll minus the interval, so a loop's own poll time counts as
lateness), the jobs never polled in it, and the sample jobs' poll counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import sys
import time
import uuid
from typing import Any

from aiohttp import web


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of ``values`` (``q`` in 0..100), ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class PollRecorder:
    """Per-job poll times and the measurement window's counts; everything in memory, one event loop."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.reset(interval=1.0, progress_per_poll=0.0)

    def reset(self, *, interval: float, progress_per_poll: float) -> None:
        self.interval = interval
        self.progress_per_poll = progress_per_poll
        self.last: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.total = 0
        self.submits = 0
        self.window_start: float | None = None
        self.window_polls = 0
        self.window_counts: dict[str, int] = {}
        self.lateness: list[float] = []

    def poll(self, job_id: str) -> int:
        now = time.monotonic()
        previous = self.last.get(job_id)
        self.last[job_id] = now
        count = self.counts.get(job_id, 0) + 1
        self.counts[job_id] = count
        self.total += 1
        if self.window_start is not None:
            self.window_polls += 1
            self.window_counts[job_id] = self.window_counts.get(job_id, 0) + 1
            if previous is not None:
                self.lateness.append(now - previous - self.interval)
        return count

    def start_window(self) -> None:
        self.window_start = time.monotonic()
        self.window_polls = 0
        self.window_counts = {}
        self.lateness = []

    def stop_window(self, sample: list[str]) -> dict[str, Any]:
        end = time.monotonic()
        start = self.window_start if self.window_start is not None else end
        self.window_start = None
        lateness = self.lateness
        return {
            "seconds": end - start,
            "polls": self.window_polls,
            "jobs_polled": len(self.window_counts),
            "lateness": {
                "count": len(lateness),
                "p50": percentile(lateness, 50),
                "p90": percentile(lateness, 90),
                "p99": percentile(lateness, 99),
                "max": max(lateness) if lateness else None,
            },
            "sample": {job: self.window_counts.get(job, 0) for job in sample},
        }


def create_app(recorder: PollRecorder) -> web.Application:
    bearer = f"Bearer {recorder.token}"

    def authorized(request: web.Request) -> bool:
        return request.headers.get("Authorization") == bearer

    async def submit(request: web.Request) -> web.Response:
        if not authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        await request.read()
        key = request.headers.get("Idempotency-Key", "")
        parts = key.split(":")
        job_id = parts[1] if len(parts) == 3 and parts[0] == "longjobs" else uuid.uuid4().hex
        recorder.submits += 1
        return web.json_response({"id": job_id, "status": "queued", "progress": 0}, status=201)

    async def status(request: web.Request) -> web.Response:
        if not authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        job_id = request.match_info["job_id"]
        count = recorder.poll(job_id)
        progress = min(99.0, count * recorder.progress_per_poll)
        return web.json_response({"id": job_id, "status": "running", "progress": progress})

    async def cancel(request: web.Request) -> web.Response:
        if not authorized(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.json_response({"id": request.match_info["job_id"], "status": "cancelled"})

    async def reset(request: web.Request) -> web.Response:
        body = await request.json()
        recorder.reset(interval=float(body["interval"]), progress_per_poll=float(body.get("progress_per_poll", 0)))
        return web.json_response({"ok": True})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"polls": recorder.total, "jobs_polled": len(recorder.counts),
                                  "submits": recorder.submits})

    async def window_start(request: web.Request) -> web.Response:
        recorder.start_window()
        return web.json_response({"ok": True})

    async def window_stop(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        return web.json_response(recorder.stop_window([str(job) for job in body.get("sample", [])]))

    app = web.Application()
    app.router.add_post("/jobs", submit)
    app.router.add_get("/jobs/{job_id}", status)
    app.router.add_post("/jobs/{job_id}/cancel", cancel)
    app.router.add_post("/admin/reset", reset)
    app.router.add_get("/admin/stats", stats)
    app.router.add_post("/admin/window/start", window_start)
    app.router.add_post("/admin/window/stop", window_stop)
    return app


async def serve(port: int, token: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(4096)
    runner = web.AppRunner(create_app(PollRecorder(token)), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock, backlog=4096).start()
    print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="The polling benchmark's job API.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port, args.token))
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
