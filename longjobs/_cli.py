"""``starter.py``: start jobs and look after them (status, watch, list, resume, cancel, result, demo)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError, CancelledError, TerminatedError
from temporalio.exceptions import TimeoutError as WorkflowTimeoutError
from temporalio.service import RPCError, RPCStatusCode

from jobspec import SpecError, list_presets, load_spec, resolve_spec, spec_json_schema
from longjobs._connection import UserError, connect_client
from longjobs._entrypoint import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from workflows import TASK_QUEUE, JobRequest, JobResult, JobState, JobStatus, LongRunningJob, parse_duration

# Flags for the JobRequest fields, so validation errors name what the user typed.
_FLAG_FOR_FIELD = {
    "poll_interval_seconds": "--poll-interval",
    "job_timeout": "--timeout",
    "max_polls": "--max-polls",
    "initial_backoff_seconds": "--initial-backoff",
    "max_backoff_seconds": "--max-backoff",
    "max_consecutive_errors": "--max-consecutive-errors",
    "auth_pause_timeout": "--auth-pause-timeout",
    "api": "--api",
    "completion": "--completion",
    "callback_fallback_poll_seconds": "--callback-fallback-poll",
    "history_events_per_run": "--history-events-per-run",
    "notify": "--notify",
    "actions": "--action",
}

QUERY_TIMEOUT_SECONDS = 5.0
REACH_TIMEOUT_SECONDS = 3.0


class _Parser(argparse.ArgumentParser):
    """argparse, but with a one-line error and exit 2 that reads like the rest of the tool."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="starter.py", description="Start and look after durable long-running HTTP jobs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    start = sub.add_parser("start", help="start a job; prints its workflow id")
    start.add_argument("--api", required=True, help="a preset name (see specs/) or a path to a spec .json file")
    start.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="a spec variable (repeatable)")
    source = start.add_mutually_exclusive_group()
    source.add_argument("--input", metavar="JSON", help="the job's input as JSON")
    source.add_argument("--input-file", metavar="FILE", help="a file holding the job's input as JSON")
    start.add_argument("--id", help="workflow id (default: job-API-RANDOM); one id, one job")
    start.add_argument("--task-queue", default=TASK_QUEUE, help="default: %(default)s")
    start.add_argument("--poll-interval", type=float, metavar="S", help="seconds between polls (default 5)")
    start.add_argument("--timeout", metavar="DURATION", help="give up after this long, e.g. 90m, 24h (default 24h)")
    start.add_argument("--max-polls", type=int, metavar="N", help="give up after N polls (default: no cap)")
    start.add_argument("--initial-backoff", type=float, metavar="S", help="first rate-limit wait (default 5)")
    start.add_argument("--max-backoff", type=float, metavar="S", help="longest rate-limit backoff (default 300)")
    start.add_argument(
        "--max-consecutive-errors", type=int, metavar="N", help="fail after N errors in a row (default 5)"
    )
    start.add_argument("--auth-pause-timeout", metavar="DURATION", help="fail if not resumed within (default 7d)")
    start.add_argument(
        "--completion", choices=["poll", "callback", "hybrid"],
        help="poll (default); callback: wait for the API to call back; hybrid: callback with slow fallback polling",
    )
    start.add_argument("--callback-fallback-poll", type=float, metavar="S", help="hybrid's polling interval (60)")
    start.add_argument("--poll-mode", choices=["timer", "activity"],
                       help="how polls wait: activity (default) or timer (README, Performance)")
    start.add_argument("--history-events-per-run", type=int, metavar="N",
                       help="continue-as-new past N history events if the server has not suggested it (8000)")
    start.add_argument("--analyze", action="store_true",
                       help="after success, a language model analyses the result (LLM_BASE_URL on the worker)")
    start.add_argument("--notify", action="append", default=[], metavar="URL",
                       help="POST signed notifications of the job's events here (repeatable)")
    start.add_argument("--action", action="append", default=[], metavar="NAME=URL",
                       help="after success, POST the result here; its answer lands in the result (repeatable)")
    start.add_argument("--wait", action="store_true", help="wait for the end; exit code as for 'result'")
    start.add_argument(
        "--no-check", action="store_true", help="skip the check that the API's host answers from here"
    )

    status = sub.add_parser("status", help="a job's state, counters and last error")
    status.add_argument("id")
    status.add_argument("--json", action="store_true", help="print JSON")

    resume = sub.add_parser(
        "resume", help="resume a job paused for credentials, or --all of them (fix the credentials first)",
        description="Resume one job (ID), or every running job in state auth_paused (--all --state auth_paused, "
        "narrowed by --api and --id-prefix).",
    )
    resume.add_argument("id", nargs="?", help="the job's workflow id (or use --all)")
    resume.add_argument("--all", action="store_true", help="every matching job; needs --state auth_paused")
    resume.add_argument("--state", metavar="STATE", help="with --all: auth_paused (the only state resume acts on)")
    resume.add_argument("--api", metavar="NAME", help="with --all: only jobs on this API")
    resume.add_argument("--id-prefix", metavar="PREFIX",
                        help="with --all: only jobs whose workflow id starts with PREFIX")
    resume.add_argument("--note", help="recorded in the job's status")

    watch = sub.add_parser("watch", help="follow a job live until it ends; exit code as for 'result'")
    watch.add_argument("id", help="the job's workflow id")
    watch.add_argument("--interval", type=float, default=1.0, metavar="S",
                       help="seconds between status queries (default %(default)g)")
    watch.add_argument("--plain", action="store_true",
                       help="one plain line per change, even on a terminal (the default when piped)")

    listing = sub.add_parser(
        "list", help="jobs from Temporal visibility, newest first",
        description="Jobs from Temporal visibility (the JobState and JobApi search attributes, which lag the jobs "
        "by a moment), newest first.",
    )
    listing.add_argument("--state", metavar="STATE", help="only jobs in this state (submitting, polling, "
                         "rate_limited, auth_paused, succeeded, failed, timed_out, cancelled)")
    listing.add_argument("--api", metavar="NAME", help="only jobs on this API")
    listing.add_argument("--id-prefix", metavar="PREFIX", help="only jobs whose workflow id starts with PREFIX")
    listing.add_argument("--limit", type=int, default=50, metavar="N",
                         help="at most N jobs: running ones first, then the most recently ended (default %(default)s)")
    listing.add_argument("--json", action="store_true", help="print one JSON object per line")

    cancel = sub.add_parser("cancel", help="cancel a job (and the external job, best effort)")
    cancel.add_argument("id")

    result = sub.add_parser("result", help="wait for a job's end; exit 0 if it succeeded, 1 if not")
    result.add_argument("id")
    result.add_argument("--json", action="store_true", help="print JSON")

    sub.add_parser("specs", help="list the API presets")
    check = sub.add_parser("check-spec", help="validate a spec file and explain each problem")
    check.add_argument("file", help="a spec .json file (or a preset name)")
    check.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="also resolve with these")
    sub.add_parser("spec-schema", help="print the JSON Schema of the spec format (for editors)")

    demo = sub.add_parser("demo", help="the whole story on an embedded default: rate limit, auth pause, resume")
    demo.add_argument("--keep", action="store_true", help="keep the dev server and services running at the end")
    return parser


# -- start ----------------------------------------------------------------------------------------------------


def _job_input(args: argparse.Namespace) -> Any:
    if args.input_file is not None:
        try:
            text = Path(args.input_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot read --input-file {args.input_file}: {exc.strerror}") from None
        where = f"--input-file {args.input_file}"
    elif args.input is not None:
        text, where = args.input, "--input"
    else:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _pair(text: str, flag: str, shape: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise UserError(f"{flag} {text!r}: expected {shape}")
    return name.strip(), value


def _variables(pairs: list[str]) -> dict[str, str]:
    return dict(_pair(pair, "--var", "NAME=VALUE") for pair in pairs)


def build_request(args: argparse.Namespace) -> JobRequest:
    """Everything ``start`` checks before it connects: a bad flag, spec or input starts nothing."""
    try:
        spec = resolve_spec(load_spec(args.api), _variables(args.var))
    except SpecError as exc:
        raise UserError(str(exc)) from None
    fields: dict[str, Any] = {"api": spec.name, "spec": spec, "input": _job_input(args)}
    for field, value in (
        ("poll_interval_seconds", args.poll_interval),
        ("job_timeout", args.timeout and parse_duration(args.timeout)),
        ("max_polls", args.max_polls),
        ("initial_backoff_seconds", args.initial_backoff),
        ("max_backoff_seconds", args.max_backoff),
        ("max_consecutive_errors", args.max_consecutive_errors),
        ("auth_pause_timeout", args.auth_pause_timeout and parse_duration(args.auth_pause_timeout)),
        ("completion", args.completion),
        ("callback_fallback_poll_seconds", args.callback_fallback_poll),
        ("poll_mode", args.poll_mode),
        ("history_events_per_run", args.history_events_per_run),
        ("analyze", {} if args.analyze else None),
    ):
        if value is not None:
            fields[field] = value
    if args.notify:
        fields["notify"] = [{"url": url} for url in args.notify]
    if args.action:
        pairs = [_pair(action, "--action", "NAME=URL") for action in args.action]
        fields["actions"] = [{"name": name, "url": url} for name, url in pairs]
    try:
        request = JobRequest.model_validate(fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else ""
        raise UserError(f"{_FLAG_FOR_FIELD.get(field, field)}: {err['msg']}") from None
    if request.completion != "poll" and spec.callback is None:
        raise UserError(f"--completion {request.completion}: API {spec.name!r} does not call back (its spec has no "
                        "callback section); use --completion poll")
    return request


async def _check_reachable(base_url: str) -> None:
    """Fail fast when the API's host does not answer at all; the worker is usually on the same network."""
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port), REACH_TIMEOUT_SECONDS)
    except (OSError, TimeoutError) as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise UserError(f"cannot reach the API at {base_url}: {reason} (--no-check skips this check)") from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def cmd_start(args: argparse.Namespace) -> int:
    request = build_request(args)
    assert request.spec is not None
    if not args.no_check:
        await _check_reachable(request.spec.base_url)
    workflow_id = args.id or f"job-{request.api}-{uuid.uuid4().hex[:12]}"
    client = await connect_client()
    try:
        handle = await client.start_workflow(
            LongRunningJob.run,
            request,
            id=workflow_id,
            task_queue=args.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
    except RPCError as exc:
        if exc.status is RPCStatusCode.ALREADY_EXISTS:
            raise UserError(
                f"a job with id {workflow_id!r} is already running (see: starter.py status {workflow_id})"
            ) from None
        raise UserError(f"cannot start the job: {exc.message}") from None
    print(handle.id, flush=True)
    if args.wait:
        return await _print_result(handle, as_json=False)
    return EXIT_OK


# -- looking after a job ----------------------------------------------------------------------------------------


async def _existing(
    client: Client, workflow_id: str
) -> tuple[WorkflowHandle[Any, JobResult], WorkflowExecutionStatus]:
    """The job's handle and Temporal status; an unknown id is a user error."""
    handle = client.get_workflow_handle_for(LongRunningJob.run, workflow_id)
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise UserError(f"no job with id {workflow_id!r}") from None
        raise UserError(f"cannot look up job {workflow_id!r}: {exc.message}") from None
    return handle, description.status or WorkflowExecutionStatus.RUNNING


async def _query_status(handle: WorkflowHandle[Any, Any]) -> JobStatus | None:
    """The job's own status, or None when no worker answers in time (the caller falls back to visibility)."""
    try:
        status: JobStatus = await handle.query(
            LongRunningJob.status, rpc_timeout=timedelta(seconds=QUERY_TIMEOUT_SECONDS)
        )
        return status
    except RPCError:
        return None
    except Exception:  # WorkflowQueryFailedError and friends: the answer is what matters, not why it is missing
        return None


_TEMPORAL_STATUS_TO_STATE = {
    WorkflowExecutionStatus.COMPLETED: JobState.SUCCEEDED,
    WorkflowExecutionStatus.FAILED: JobState.FAILED,
    WorkflowExecutionStatus.CANCELED: JobState.CANCELLED,
    WorkflowExecutionStatus.TERMINATED: JobState.CANCELLED,
    WorkflowExecutionStatus.TIMED_OUT: JobState.TIMED_OUT,
}


async def cmd_status(args: argparse.Namespace) -> int:
    client = await connect_client()
    handle, temporal_status = await _existing(client, args.id)
    status = await _query_status(handle)
    note = None
    if status is None:
        # No worker answered: report what Temporal itself knows, and say so.
        state = _TEMPORAL_STATUS_TO_STATE.get(temporal_status)
        description = await handle.describe()
        raw = description.search_attributes.get("JobState")
        state_word = state.value if state else (str(raw[0]) if raw else "unknown")
        status_dict: dict[str, Any] = {"state": state_word}
        note = "no worker answered the status query; counters unavailable (is a worker running?)"
    else:
        status_dict = status.model_dump(mode="json")
    status_dict = {"workflow_id": handle.id, "workflow_status": temporal_status.name, **status_dict}
    if note:
        status_dict["note"] = note
    if args.json:
        print(json.dumps(status_dict, indent=2))
        return EXIT_OK
    _print_status(status_dict)
    return EXIT_OK


def _print_status(status: dict[str, Any]) -> None:
    lines = [("workflow", status["workflow_id"]), ("state", status["state"])]
    for key, label in (
        ("api", "api"),
        ("job_id", "job id"),
        ("status_word", "api status"),
        ("progress", "progress"),
        ("poll_count", "polls"),
        ("consecutive_error_count", "errors in a row"),
        ("total_error_count", "errors in all"),
        ("current_backoff_seconds", "backoff (s)"),
        ("next_poll_time", "next poll"),
        ("paused_since", "paused since"),
        ("resume_note", "resume note"),
        ("warning", "warning"),
        ("note", "note"),
    ):
        value = status.get(key)
        if value is not None:
            lines.append((label, f"{value:.0f}%" if key == "progress" else str(value)))
    error = status.get("last_error")
    if error:
        http = f" HTTP {error['http_status']}" if error.get("http_status") else ""
        lines.append(("last error", f"{error['error_class']}{http} at {error['step']}: {error['message']}"))
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        print(f"{label:<{width}}  {value}")
    if status["state"] == JobState.AUTH_PAUSED.value:
        print(f"\nfix the credentials, then: python starter.py resume {status['workflow_id']}")


async def cmd_resume(args: argparse.Namespace) -> int:
    if args.all:
        from longjobs._ops import resume_all

        return await resume_all(args)
    if args.id is None:
        raise UserError("give a job id, or --all --state auth_paused to resume every paused job")
    for flag, value in (("--state", args.state), ("--api", args.api), ("--id-prefix", args.id_prefix)):
        if value is not None:
            raise UserError(f"{flag} only goes with --all")
    client = await connect_client()
    handle, temporal_status = await _existing(client, args.id)
    if temporal_status is not WorkflowExecutionStatus.RUNNING:
        raise UserError(f"job {args.id!r} has ended ({temporal_status.name.lower()}); nothing to resume")
    status = await _query_status(handle)
    await handle.signal(LongRunningJob.resume, {"note": args.note} if args.note else None)
    if status is not None and status.state is not JobState.AUTH_PAUSED:
        print(f"resume sent to {args.id}, but it is {status.state.value}, not auth_paused: it will be ignored")
    else:
        print(f"resume sent to {args.id}")
    return EXIT_OK


async def cmd_cancel(args: argparse.Namespace) -> int:
    client = await connect_client()
    handle, temporal_status = await _existing(client, args.id)
    if temporal_status is not WorkflowExecutionStatus.RUNNING:
        print(f"job {args.id} has already ended ({temporal_status.name.lower()})", file=sys.stderr)
        return EXIT_FAILED
    await handle.cancel()
    print(f"cancellation requested for {args.id}; the external job is cancelled too (best effort)")
    return EXIT_OK


async def cmd_result(args: argparse.Namespace) -> int:
    client = await connect_client()
    handle, _ = await _existing(client, args.id)
    return await _print_result(handle, as_json=args.json)


async def _print_result(handle: WorkflowHandle[Any, JobResult], *, as_json: bool) -> int:
    """Wait for the job's end; print the result (exit 0) or why it did not succeed (exit 1), on one line."""
    try:
        result = await handle.result()
    except WorkflowFailureError as exc:
        state, error_type, message = _why(exc)
        if as_json:
            print(json.dumps({"workflow_id": handle.id, "state": state, "error": {"type": error_type,
                                                                                   "message": message}}, indent=2))
        else:
            print(f"job {handle.id} {state}: {error_type}: {message}")
        return EXIT_FAILED
    if as_json:
        print(json.dumps({"workflow_id": handle.id, **result.model_dump(mode="json")}, indent=2))
    else:
        print(f"job {handle.id} succeeded (api job id {result.job_id}, {result.poll_count} polls, "
              f"{result.total_error_count} errors)")
        print(json.dumps(result.result, indent=2))
        for name, answer in result.actions.items():
            print(f"action {name}: {json.dumps(answer)}")
        for name, error in result.action_errors.items():
            print(f"action {name} failed: {error}")
        if result.analysis is not None:
            _print_analysis(result.analysis, result.analysis_trimmed_chars)
        elif result.analysis_error:
            print(f"no analysis: {result.analysis_error}")
    return EXIT_OK


def _print_analysis(analysis: dict[str, Any], trimmed: int) -> None:
    print("\nanalysis" + (f" (the result was trimmed by {trimmed} characters before sending)" if trimmed else ""))
    print(f"  summary: {analysis.get('summary', '')}")
    for title, key in (("findings", "findings"), ("recommendations", "recommendations")):
        items = analysis.get(key) or []
        if items:
            print(f"  {title}:")
            for item in items:
                print(f"    - {item}")


def _why(exc: WorkflowFailureError) -> tuple[str, str, str]:
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        state = {"PollTimeout": "timed_out", "JobCancelled": "cancelled"}.get(cause.type or "", "failed")
        return state, cause.type or "ApplicationError", cause.message
    if isinstance(cause, CancelledError):
        return "cancelled", "Cancelled", "the job was cancelled"
    if isinstance(cause, TerminatedError):
        return "cancelled", "Terminated", cause.message or "the workflow was terminated"
    if isinstance(cause, WorkflowTimeoutError):
        return "timed_out", "WorkflowTimeout", cause.message
    return "failed", type(cause).__name__, str(cause)


async def cmd_watch(args: argparse.Namespace) -> int:
    from longjobs._watch import watch_command  # rich is imported only by the commands that draw

    return await watch_command(args)


async def cmd_list(args: argparse.Namespace) -> int:
    from longjobs._ops import list_command

    return await list_command(args)


async def cmd_specs(args: argparse.Namespace) -> int:
    for name in list_presets():
        spec = load_spec(name)
        first = spec.description.split(". ")[0].split(": ")[0]
        needs = [v for v, var in spec.variables.items() if var.default is None]
        print(f"{name:<15} {first}" + (f"  [--var {' --var '.join(n + '=…' for n in needs)}]" if needs else ""))
    return EXIT_OK


async def cmd_check_spec(args: argparse.Namespace) -> int:
    try:
        spec = load_spec(args.file)
    except SpecError as exc:
        print(f"{args.file}: invalid spec", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.var:
        try:
            resolve_spec(spec, _variables(args.var))
        except SpecError as exc:
            raise UserError(str(exc)) from None
    variables = ", ".join(
        f"{name}" + (f" (default {var.default})" if var.default is not None else " (required)")
        for name, var in spec.variables.items()
    )
    print(f"{args.file}: valid spec for API {spec.name!r}; variables: {variables or 'none'}")
    return EXIT_OK


async def cmd_spec_schema(args: argparse.Namespace) -> int:
    print(json.dumps(spec_json_schema(), indent=2))
    return EXIT_OK


COMMANDS = {
    "start": cmd_start,
    "status": cmd_status,
    "resume": cmd_resume,
    "cancel": cmd_cancel,
    "result": cmd_result,
    "watch": cmd_watch,
    "list": cmd_list,
    "specs": cmd_specs,
    "check-spec": cmd_check_spec,
    "spec-schema": cmd_spec_schema,
}
