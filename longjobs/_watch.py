"""``starter.py watch ID``: follow one job until it ends, and exit with its outcome (as ``result`` does).

On a terminal it is a live rich view: a progress bar from the API's progress, the state, the counters, the
last error and a countdown to the next poll. Anywhere else (a pipe, a log file, CI) it prints one plain line
each time the state, progress, poll count or error count changes, with no control codes.
``LONGJOBS_FORCE_TERMINAL=1`` forces the live view, ``--plain`` (or ``LONGJOBS_FORCE_TERMINAL=0``) the lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from rich.console import Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table
from rich.text import Text
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError

from longjobs._cli import _TEMPORAL_STATUS_TO_STATE, _existing, _query_status, _why
from longjobs._connection import UserError, connect_client
from longjobs._entrypoint import EXIT_FAILED, EXIT_OK
from longjobs._ops import new_console, state_style
from workflows import JOB_STATE, JobResult, JobState, JobStatus

DEFAULT_INTERVAL_SECONDS = 1.0
# After the job reports an end state, how long to wait for the workflow to close (it stays open a little while
# its last notifications are delivered) before reporting the outcome from the state alone.
END_GRACE_SECONDS = 5.0
_TERMINAL_STATES = frozenset(state.value for state in JobState if state.is_terminal)
NO_WORKER_NOTE = "no worker answered the status query; counters unavailable (is a worker running?)"


@dataclass(frozen=True)
class Snapshot:
    """What the job said (or, without a worker, what Temporal knows), at one moment."""

    state: str
    status: JobStatus | None
    note: str | None = None

    @property
    def key(self) -> tuple[Any, ...]:
        """What makes a new plain line: a change of state, progress, poll count or error count."""
        status = self.status
        if status is None:
            return (self.state, self.note)
        return (self.state, status.progress, status.poll_count, status.total_error_count)


@dataclass(frozen=True)
class Outcome:
    code: int
    line: str


# -- reading the job ---------------------------------------------------------------------------------------------


async def _snapshot(handle: WorkflowHandle[Any, JobResult]) -> Snapshot:
    status = await _query_status(handle)
    if status is not None:
        return Snapshot(state=status.state.value, status=status)
    try:
        description = await handle.describe()
    except RPCError as exc:
        return Snapshot(state="unknown", status=None, note=f"cannot describe the job: {exc.message}")
    temporal_status = description.status or WorkflowExecutionStatus.RUNNING
    mapped = _TEMPORAL_STATUS_TO_STATE.get(temporal_status)
    state = mapped.value if mapped else (description.typed_search_attributes.get(JOB_STATE) or "unknown")
    return Snapshot(state=state, status=None, note=NO_WORKER_NOTE)


async def _outcome(handle: WorkflowHandle[Any, JobResult]) -> Outcome:
    """The job's end, as ``result`` reports it (one line) and with its exit code."""
    try:
        result = await handle.result()
    except WorkflowFailureError as exc:
        state, error_type, message = _why(exc)
        return Outcome(EXIT_FAILED, f"job {handle.id} {state}: {error_type}: {message}")
    except RPCError as exc:
        raise UserError(f"lost track of job {handle.id!r}: {exc.message}") from None
    return Outcome(EXIT_OK, f"job {handle.id} succeeded (api job id {result.job_id}, {result.poll_count} polls, "
                            f"{result.total_error_count} errors)")


def _outcome_from_state(handle_id: str, snapshot: Snapshot) -> Outcome:
    """When the workflow is still open after its end state (delivering notifications): report from the state."""
    status = snapshot.status
    if snapshot.state == JobState.SUCCEEDED.value:
        counts = f" ({status.poll_count} polls, {status.total_error_count} errors)" if status else ""
        return Outcome(EXIT_OK, f"job {handle_id} succeeded{counts}; its run closes once notifications are sent")
    error = status.last_error if status else None
    reason = f": last error {error.error_class}: {error.message}" if error else ""
    return Outcome(EXIT_FAILED, f"job {handle_id} {snapshot.state}{reason}")


# -- showing it ----------------------------------------------------------------------------------------------------


def _pct(progress: float | None) -> str:
    return "?" if progress is None else f"{progress:.0f}%"


def _seconds(value: float) -> str:
    value = max(0.0, value)
    if value < 90:
        return f"{value:.0f}s"
    if value < 5400:
        return f"{value / 60:.0f}m"
    return f"{value / 3600:.1f}h"


def _next_poll(snapshot: Snapshot, now: datetime) -> str | None:
    status = snapshot.status
    if snapshot.state == JobState.AUTH_PAUSED.value:
        return "none: paused until resumed"
    if status is None or status.next_poll_time is None or snapshot.state in _TERMINAL_STATES:
        return None
    remaining = (status.next_poll_time - now).total_seconds()
    return f"in {_seconds(remaining)}" if remaining >= 0.5 else "due now"


def _last_error(status: JobStatus | None) -> str | None:
    error = status.last_error if status else None
    if error is None:
        return None
    http = f" HTTP {error.http_status}" if error.http_status else ""
    return f"{error.error_class}{http} at {error.step}: {error.message}"


def plain_line(snapshot: Snapshot, now: datetime) -> str:
    """One line of the plain view, e.g. ``12:00:03 polling 40% polls 2 errors 0 next poll in 1s``."""
    parts = [now.astimezone().strftime("%H:%M:%S"), f"{snapshot.state:<12}"]
    status = snapshot.status
    if status is not None:
        parts += [f"{_pct(status.progress):>4}", f"polls {status.poll_count}",
                  f"errors {status.total_error_count} ({status.consecutive_error_count} in a row)"]
        if status.status_word:
            parts.append(f"api says {status.status_word}")
        next_poll = _next_poll(snapshot, now)
        if next_poll:
            parts.append(f"next poll {next_poll}")
        error = _last_error(status)
        if error:
            parts.append(f"last error {error}")
    if snapshot.note:
        parts.append(snapshot.note)
    return "  ".join(parts)


class _LiveView:
    """The rich renderable behind ``Live``: rebuilt at every refresh, so the countdown ticks between queries."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        self.snapshot: Snapshot | None = None
        self._progress = Progress(
            BarColumn(bar_width=None),
            TaskProgressColumn(),
            TextColumn("{task.description}"),
            expand=True,
        )
        self._task = self._progress.add_task("", total=None)

    def __rich__(self) -> RenderableType:
        snapshot = self.snapshot
        title = Text(self.workflow_id, style="bold")
        if snapshot is None:
            return Panel(Text("asking the job for its status…"), title=title, title_align="left")
        status = snapshot.status
        if status is not None:
            api = f" · {status.api}" if status.api else ""
            title = Text.assemble((self.workflow_id, "bold"), api)
        progress = status.progress if status else None
        terminal = snapshot.state in _TERMINAL_STATES
        self._progress.update(
            self._task,
            total=100.0 if progress is not None else (100.0 if terminal else None),
            completed=progress if progress is not None else 0.0,
            description=(status.status_word or "") if status else "",
        )
        rows = Table.grid(padding=(0, 2))
        rows.add_column(style="dim", no_wrap=True)
        rows.add_column()
        rows.add_row("state", Text(snapshot.state, style=state_style(snapshot.state)))
        if status is not None:
            if status.job_id:
                rows.add_row("api job id", Text(status.job_id))
            rows.add_row("polls", str(status.poll_count))
            rows.add_row("errors", f"{status.consecutive_error_count} in a row, {status.total_error_count} in all")
            if status.current_backoff_seconds and snapshot.state == JobState.RATE_LIMITED.value:
                rows.add_row("backoff", _seconds(status.current_backoff_seconds))
            next_poll = _next_poll(snapshot, datetime.now(UTC))
            if next_poll:
                rows.add_row("next poll", next_poll)
            error = _last_error(status)
            if error:
                rows.add_row("last error", Text(error, style="red"))
            if status.warning:
                rows.add_row("warning", Text(status.warning, style="yellow"))
            if status.resume_note:
                rows.add_row("resume note", Text(status.resume_note))
        if snapshot.note:
            rows.add_row("note", Text(snapshot.note, style="yellow"))
        parts: list[RenderableType] = [self._progress, rows]
        if snapshot.state == JobState.AUTH_PAUSED.value:
            parts.append(Text(f"fix the credentials, then: python starter.py resume {self.workflow_id}",
                              style="bold magenta"))
        return Panel(Group(*parts), title=title, title_align="left")


class _PlainView:
    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._last_key: tuple[Any, ...] | None = None

    def show(self, snapshot: Snapshot) -> None:
        if snapshot.key != self._last_key:
            self._last_key = snapshot.key
            print(plain_line(snapshot, datetime.now(UTC)), file=self._out, flush=True)


# -- the command ---------------------------------------------------------------------------------------------------


async def watch_command(args: argparse.Namespace) -> int:
    interval = args.interval
    if not interval > 0:
        raise UserError(f"--interval {interval}: must be more than 0 seconds")
    client = await connect_client()
    handle, _ = await _existing(client, args.id)
    console = new_console()
    if args.plain or not console.is_terminal:
        return (await _follow(handle, interval, _PlainView(sys.stdout).show)).code
    view = _LiveView(handle.id)

    def show(snapshot: Snapshot) -> None:
        view.snapshot = snapshot

    with Live(view, console=console, refresh_per_second=4, transient=False, redirect_stdout=False):
        outcome = await _follow(handle, interval, show, quiet=True)
    console.print(Text(outcome.line, style="green" if outcome.code == EXIT_OK else "red"))
    return outcome.code


async def _follow(
    handle: WorkflowHandle[Any, JobResult], interval: float, show: Callable[[Snapshot], None], *, quiet: bool = False
) -> Outcome:
    """Call ``show`` every ``interval`` seconds until the job ends; print (unless quiet) and return its outcome."""
    ended = asyncio.create_task(_outcome(handle))
    try:
        snapshot = await _snapshot(handle)
        while True:
            show(snapshot)
            if ended.done():
                break
            if snapshot.state in _TERMINAL_STATES:
                # The job has ended; its workflow closes as soon as its last notifications are out.
                await asyncio.wait({ended}, timeout=END_GRACE_SECONDS)
                if not ended.done():
                    outcome = _outcome_from_state(handle.id, snapshot)
                    if not quiet:
                        print(outcome.line, flush=True)
                    return outcome
                break
            await asyncio.wait({ended}, timeout=interval)
            snapshot = await _snapshot(handle)
        outcome = ended.result()
        if snapshot.status is not None and snapshot.state not in _TERMINAL_STATES:
            show(await _snapshot(handle))  # the end state and last counters (a worker answered a moment ago)
        if not quiet:
            print(outcome.line, flush=True)
        return outcome
    finally:
        if not ended.done():
            ended.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await ended

