"""What the runner and the worker processes share: pacing of starts, and reading a process's CPU and memory."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable

TOKEN = "bench-polling-token"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


async def pace(count: int, start: Callable[[int], Awaitable[None]], *, rate: float, concurrency: int) -> None:
    """Call ``start(i)`` for ``i`` in ``range(count)``, at most ``rate`` per second and ``concurrency`` at once.

    Spreading starts evenly over the poll interval spreads the polls too, as jobs started over time would be.
    """
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    t0 = loop.time()

    async def one(i: int) -> None:
        delay = t0 + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        async with gate:
            await start(i)

    await asyncio.gather(*(one(i) for i in range(count)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process, from /proc (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, as in proc(5)).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds every CPU of the machine has spent busy since boot (all processes, from /proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    # guest time is already counted in user time
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def peak_rss_mib(pid: int) -> float | None:
    """The process's peak resident set size (VmHWM), in MiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
