"""Operator commands over many jobs at once: ``list`` and ``resume --all``, from Temporal visibility.

Visibility (the ``JobState`` and ``JobApi`` search attributes) is eventually consistent: a job that changed
state a moment ago may still be listed under its old one. ``resume --all`` therefore asks each listed job
for its own state before signalling it, and never re-queries visibility afterwards to "verify".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from longjobs._cli import _query_status
from longjobs._connection import UserError, connect_client
from longjobs._entrypoint import EXIT_FAILED, EXIT_OK
from workflows import JOB_API, JOB_STATE, WORKFLOW_TYPE, JobState, LongRunningJob

# Signals in flight at once for ``resume --all``: quick for hundreds of jobs, gentle on the frontend.
RESUME_CONCURRENCY = 20
# Failures printed one per line by ``resume --all`` (the count is always complete).
MAX_FAILURES_SHOWN = 10
DEFAULT_LIST_LIMIT = 50

# A visibility query is a string: values go in double quotes, and a value that could end the quotes is refused
# rather than escaped (job API names are [A-Za-z0-9_.-]; workflow ids chosen by people rarely hold these).
_UNSAFE_IN_LITERAL = re.compile(r'["\'\\\x00-\x1f\x7f]')

_STATE_NAMES = ", ".join(state.value for state in JobState)


def parse_state(text: str, flag: str = "--state") -> JobState:
    """A ``JobState`` from the command line; anything else is a one-line user error."""
    try:
        return JobState(text)
    except ValueError:
        raise UserError(f"{flag} {text!r}: not a job state (one of: {_STATE_NAMES})") from None


def _literal(value: str, flag: str) -> str:
    if not value:
        raise UserError(f"{flag}: must not be empty")
    if _UNSAFE_IN_LITERAL.search(value):
        raise UserError(f"{flag} {value!r}: quotes, backslashes and control characters are not allowed here")
    return f'"{value}"'


def build_query(
    *, state: JobState | None = None, api: str | None = None, id_prefix: str | None = None, running: bool = False
) -> str:
    """The visibility query for this project's jobs, narrowed by the given filters (every value quoted).

    A state that is not terminal only means something while the workflow runs: a terminated workflow keeps the
    last ``JobState`` it upserted, so those filters also require ``ExecutionStatus = "Running"``.
    """
    clauses = [f'WorkflowType = "{WORKFLOW_TYPE}"']
    if state is not None:
        clauses.append(f"{JOB_STATE.name} = {_literal(state.value, '--state')}")
        running = running or not state.is_terminal
    if api is not None:
        clauses.append(f"{JOB_API.name} = {_literal(api, '--api')}")
    if id_prefix is not None:
        clauses.append(f"WorkflowId STARTS_WITH {_literal(id_prefix, '--id-prefix')}")
    # A continued-as-new run is one hand-over of a job whose latest run is listed anyway.
    clauses.append('ExecutionStatus = "Running"' if running else 'ExecutionStatus != "ContinuedAsNew"')
    return " AND ".join(clauses)


async def _executions(client: Client, query: str, limit: int | None) -> AsyncIterator[WorkflowExecution]:
    try:
        async for execution in client.list_workflows(query, limit=limit, page_size=min(limit or 1000, 1000)):
            yield execution
    except RPCError as exc:
        hint = ""
        if JOB_STATE.name in exc.message or JOB_API.name in exc.message:
            hint = " (start worker.py once against this namespace: it registers the JobState and JobApi attributes)"
        raise UserError(f"cannot list jobs: {exc.message}{hint}") from None


# -- list -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRow:
    workflow_id: str
    run_id: str
    api: str | None
    state: str | None
    status: str
    start_time: datetime
    close_time: datetime | None

    @classmethod
    def of(cls, execution: WorkflowExecution) -> JobRow:
        attributes = execution.typed_search_attributes
        status = execution.status or WorkflowExecutionStatus.RUNNING
        return cls(
            workflow_id=execution.id,
            run_id=execution.run_id,
            api=attributes.get(JOB_API),
            state=attributes.get(JOB_STATE),
            status=status.name,
            start_time=execution.start_time,
            close_time=execution.close_time,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "api": self.api,
            "state": self.state,
            "status": self.status,
            "start_time": self.start_time.isoformat(),
            "close_time": self.close_time.isoformat() if self.close_time else None,
        }


_STATE_STYLE = {
    JobState.SUBMITTING.value: "cyan",
    JobState.POLLING.value: "cyan",
    JobState.RATE_LIMITED.value: "yellow",
    JobState.AUTH_PAUSED.value: "bold magenta",
    JobState.SUCCEEDED.value: "green",
    JobState.FAILED.value: "red",
    JobState.TIMED_OUT.value: "red",
    JobState.CANCELLED.value: "red",
}


def state_style(state: str | None) -> str:
    return _STATE_STYLE.get(state or "", "")


def new_console(**kwargs: Any) -> Console:
    """A rich Console; ``LONGJOBS_FORCE_TERMINAL=1`` (or ``0``) overrides the terminal detection."""
    forced = os.environ.get("LONGJOBS_FORCE_TERMINAL")
    if forced is not None and forced.strip() != "":
        kwargs.setdefault("force_terminal", forced.strip().lower() not in ("0", "false", "no"))
    return Console(**kwargs)


async def list_command(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UserError(f"--limit {args.limit}: must be at least 1")
    state = parse_state(args.state) if args.state is not None else None
    query = build_query(state=state, api=args.api, id_prefix=args.id_prefix)
    client = await connect_client()
    rows = [JobRow.of(execution) async for execution in _executions(client, query, args.limit)]
    # Newest first (SQL visibility cannot ORDER BY; this sorts what the server returned).
    rows.sort(key=lambda row: row.start_time, reverse=True)
    if args.json:
        for row in rows:
            print(json.dumps(row.as_json()))
    else:
        _print_table(rows)
    if len(rows) == args.limit:
        print(f"(the newest {len(rows)}; there may be more: raise --limit)", file=sys.stderr)
    return EXIT_OK


def _print_table(rows: list[JobRow]) -> None:
    probe = new_console()
    # Piped, rich would wrap at 80 columns; a pipe has no width, so let lines be as long as the rows are.
    console = probe if probe.is_terminal or os.environ.get("COLUMNS") else new_console(width=400)
    if not rows:
        console.print("no jobs match")
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, highlight=False)
    table.add_column("workflow id", no_wrap=True, overflow="fold")
    table.add_column("api", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("started", no_wrap=True)
    table.add_column("temporal status", no_wrap=True)
    for row in rows:
        table.add_row(
            Text(row.workflow_id),
            Text(row.api or "-"),
            Text(row.state or "-", style=state_style(row.state)),
            Text(row.start_time.astimezone().strftime("%Y-%m-%d %H:%M:%S")),
            Text(row.status.lower()),
        )
    console.print(table)


# -- resume --all -----------------------------------------------------------------------------------------------


@dataclass
class _Tally:
    resumed: int = 0
    unconfirmed: int = 0  # signalled, but no worker answered the status query first
    moved_on: int = 0  # listed as auth_paused, but the job itself says otherwise (visibility lags)
    ended: int = 0
    failures: list[tuple[str, str]] | None = None


async def resume_all(args: argparse.Namespace) -> int:
    """``resume --all --state auth_paused [--api NAME] [--id-prefix P] [--note TEXT]``."""
    if args.id is not None:
        raise UserError("give a job id or --all, not both")
    if args.state is None:
        raise UserError("--all needs --state auth_paused (resume only acts on jobs paused for credentials)")
    state = parse_state(args.state)
    if state is not JobState.AUTH_PAUSED:
        raise UserError(f"--state {state.value}: resume only acts on auth_paused jobs; use --state auth_paused")
    query = build_query(state=state, api=args.api, id_prefix=args.id_prefix, running=True)
    client = await connect_client()
    ids = list(dict.fromkeys([execution.id async for execution in _executions(client, query, None)]))
    scope = _scope(args)
    if not ids:
        print(f"0 jobs paused{scope}: nothing to resume")
        return EXIT_OK

    payload = {"note": args.note} if args.note else None
    tally = _Tally(failures=[])
    gate = asyncio.Semaphore(RESUME_CONCURRENCY)

    async def resume_one(workflow_id: str) -> None:
        async with gate:
            handle = client.get_workflow_handle_for(LongRunningJob.run, workflow_id)
            status = await _query_status(handle)
            if status is not None and status.state is not JobState.AUTH_PAUSED:
                tally.moved_on += 1
                return
            try:
                await handle.signal(LongRunningJob.resume, payload)
            except RPCError as exc:
                if exc.status is RPCStatusCode.NOT_FOUND:
                    tally.ended += 1
                else:
                    assert tally.failures is not None
                    tally.failures.append((workflow_id, exc.message))
                return
            tally.resumed += 1
            if status is None:
                tally.unconfirmed += 1

    await asyncio.gather(*(resume_one(workflow_id) for workflow_id in ids))
    return _report(tally, scope)


def _scope(args: argparse.Namespace) -> str:
    parts = [f"api {args.api}" if args.api else "", f"ids {args.id_prefix}*" if args.id_prefix else ""]
    shown = ", ".join(part for part in parts if part)
    return f" ({shown})" if shown else ""


def _jobs(count: int) -> str:
    return f"{count} job" if count == 1 else f"{count} jobs"


def _report(tally: _Tally, scope: str) -> int:
    failures = tally.failures or []
    skipped = []
    if tally.moved_on:
        skipped.append(f"{tally.moved_on} listed were no longer auth_paused")
    if tally.ended:
        skipped.append(f"{tally.ended} had ended")
    if tally.resumed == 0 and not failures:
        print(f"0 jobs paused{scope}" + (f" ({'; '.join(skipped)}: visibility lags a little)" if skipped else ""))
        return EXIT_OK
    details = []
    if tally.unconfirmed:
        details.append(f"{tally.unconfirmed} without a worker to confirm: they resume when one runs")
    details.extend(f"skipped {text}" for text in skipped)
    if failures:
        details.append(f"{len(failures)} failed")
    print(f"resumed {_jobs(tally.resumed)}{scope}" + (f"; {'; '.join(details)}" if details else ""))
    for workflow_id, message in failures[:MAX_FAILURES_SHOWN]:
        print(f"  {workflow_id}: {message}", file=sys.stderr)
    if len(failures) > MAX_FAILURES_SHOWN:
        print(f"  ... and {len(failures) - MAX_FAILURES_SHOWN} more", file=sys.stderr)
    return EXIT_FAILED if failures else EXIT_OK
