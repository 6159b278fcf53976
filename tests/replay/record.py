"""Record one LongRunningJob history per path into ``tests/replay/histories/`` for the replay tests.

Run from the project root (takes well under a minute; needs nothing but the dev extras)::

    .venv/bin/python -m tests.replay.record

It starts two throw-away dev servers (``temporal`` next to this interpreter, in memory, with the ``JobState``
search attribute, so histories carry the upserts production has), the real demo job service, a callback
receiver, a small endpoint for notifications and actions, and a worker running the current workflow code.
Then it drives one short job down each path at once, checks that each really ended the way its path says,
and only then replaces every file in ``histories/`` with ``<path>.json`` (``<path>-run<N>.json`` for each run
of a chain that continued as new). The ``histories/before-*/`` folders (recordings kept from before a patch)
are left as they are. The second dev server suggests continue-as-new after 40 events, so the
``continue_as_new`` job hands over twice within a few seconds; every other path runs on the first one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment

from callbacks import ReceiverSettings, running_receiver
from demo_service import DEFAULT_WEBHOOK_SECRET, DemoService, running_demo_service
from jobspec import ActionSpec, load_spec, resolve_spec
from longjobs import new_worker
from workflows import SEARCH_ATTRIBUTE_KEYS, JobRequest, JobResult, JobState, JobStatus, LongRunningJob, NotifyTarget

HISTORIES = Path(__file__).parent / "histories"
TOKEN = "replay-token"
ROTATED = "replay-token-rotated"
ADMIN_KEY = "replay-admin"
ADMIN_HEADERS = {"X-Admin-Key": ADMIN_KEY}
CALLBACK_SECRET = "replay-recording-callback-secret"
# A bound on each job (all of them run at once): a hang fails the recording instead of blocking it.
PATH_TIMEOUT_SECONDS = 60
# Far below the default (4 Ki events), so a job of a dozen polls continues as new twice.
SUGGEST_CONTINUE_AS_NEW_AFTER = 40


@dataclass
class Harness:
    """What every path needs: a client of its server, that server's task queue, the endpoints' URL."""

    client: Client
    task_queue: str
    http: httpx.AsyncClient
    endpoints_url: str
    # Requests the notification endpoint got, by event.
    notifications: dict[str, int]


def workflow_id(path: str) -> str:
    return f"replay-{path}"


def request(demo: DemoService, **fields: Any) -> JobRequest:
    """A short job on ``demo``, JobState published as in production.

    Paths poll with timers unless they say otherwise (``poll_mode=None``: the default, the activity mode).
    """
    fields.setdefault("input", {"work_polls": 2})
    fields.setdefault("poll_interval_seconds", 0.2)
    fields.setdefault("poll_mode", "timer")
    spec = resolve_spec(load_spec("demo"), {"base_url": demo.url}, environ={})
    return JobRequest(api="demo", spec=spec, publish_job_state=True, **fields)


async def start(h: Harness, path: str, demo: DemoService, **fields: Any) -> WorkflowHandle[Any, JobResult]:
    return await h.client.start_workflow(
        LongRunningJob.run, request(demo, **fields), id=workflow_id(path), task_queue=h.task_queue
    )


async def inject(h: Harness, demo: DemoService, **fault: Any) -> None:
    response = await h.http.post(f"{demo.url}/admin/faults", json=fault, headers=ADMIN_HEADERS)
    response.raise_for_status()


async def status_of(handle: WorkflowHandle[Any, Any]) -> JobStatus:
    status: JobStatus = await handle.query(LongRunningJob.status)
    return status


async def wait_for(handle: WorkflowHandle[Any, Any], predicate: Callable[[JobStatus], bool], what: str) -> None:
    for _ in range(400):
        with contextlib.suppress(Exception):  # not queryable before its first workflow task
            if predicate(await status_of(handle)):
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id}: never got to {what}")


async def failure_of(handle: WorkflowHandle[Any, Any]) -> BaseException:
    try:
        await handle.result()
    except WorkflowFailureError as err:
        assert err.cause is not None
        return err.cause
    raise AssertionError(f"{handle.id} succeeded, a failure was expected")


async def error_type(handle: WorkflowHandle[Any, Any]) -> str | None:
    cause = await failure_of(handle)
    assert isinstance(cause, ApplicationError), repr(cause)
    return cause.type


def check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


# -- the paths: each drives one job on its own demo service and checks it ended the way the path says ----------


async def success(h: Harness, demo: DemoService, path: str = "success", **fields: Any) -> WorkflowHandle[Any, Any]:
    polls = fields.setdefault("input", {"work_polls": 2})["work_polls"]
    handle = await start(h, path, demo, **fields)
    result = await handle.result()
    check(result.state is JobState.SUCCEEDED and result.poll_count == polls, f"{path}: {result}")
    return handle


async def rate_limit(h: Harness, demo: DemoService) -> WorkflowHandle[Any, Any]:
    await inject(h, demo, match="poll", status=429, times=2, retry_after="1")
    handle = await start(h, "rate_limit", demo, initial_backoff_seconds=0.2)
    result = await handle.result()
    check(result.state is JobState.SUCCEEDED and result.total_error_count == 2, f"rate_limit: {result}")
    return handle


async def auth_pause_resume(
    h: Harness, demo: DemoService, path: str = "auth_pause_resume", **fields: Any
) -> WorkflowHandle[Any, Any]:
    handle = await start(h, path, demo, input={"work_polls": 3}, poll_interval_seconds=0.5, **fields)
    await wait_for(handle, lambda s: s.job_id is not None and s.state is JobState.POLLING, "polling")
    demo.state.token = ROTATED  # the API rotated its token: the next poll gets a 401
    await wait_for(handle, lambda s: s.state is JobState.AUTH_PAUSED, "auth_paused")
    demo.state.token = TOKEN  # the credential is fixed...
    await handle.signal(LongRunningJob.resume, {"note": "token fixed"})  # ...and the job resumed
    result = await handle.result()
    status = await status_of(handle)
    check(result.state is JobState.SUCCEEDED and status.resume_note == "token fixed", f"{path}: {status}")
    return handle


async def permanent_error(h: Harness, demo: DemoService) -> WorkflowHandle[Any, Any]:
    await inject(h, demo, match="poll", status=404, times=1)
    handle = await start(h, "permanent_error", demo)
    check(await error_type(handle) == "PermanentHttpError", "permanent_error")
    return handle


async def error_limit(h: Harness, demo: DemoService) -> WorkflowHandle[Any, Any]:
    await inject(h, demo, match="poll", status=500, times=10)
    handle = await start(h, "error_limit", demo, max_consecutive_errors=3)
    check(await error_type(handle) == "ErrorLimitExceeded", "error_limit")
    return handle


async def timeout(h: Harness, demo: DemoService) -> WorkflowHandle[Any, Any]:
    handle = await start(h, "timeout", demo, input={"work_polls": 1000}, poll_interval_seconds=1,
                         job_timeout=timedelta(seconds=3))
    check(await error_type(handle) == "PollTimeout", "timeout")
    check(demo.state.cancel_requests == 1, "timeout: the external job was not cancelled")
    return handle


async def cancel(h: Harness, demo: DemoService) -> WorkflowHandle[Any, Any]:
    handle = await start(h, "cancel", demo, input={"work_polls": 1000}, poll_interval_seconds=0.5)
    await wait_for(handle, lambda s: s.job_id is not None and s.poll_count >= 1, "a poll")
    await handle.cancel()
    cause = await failure_of(handle)
    check(isinstance(cause, CancelledError), f"cancel: {cause!r}")
    check(demo.state.cancel_requests == 1, "cancel: the external job was not cancelled")
    return handle


async def continue_as_new(h: Harness, demo: DemoService) -> WorkflowHandle[Any, Any]:
    handle = await start(h, "continue_as_new", demo, input={"work_polls": 14})
    result = await handle.result()  # follows the runs
    check(result.state is JobState.SUCCEEDED and result.runs >= 3, f"continue_as_new: {result}")
    return handle


async def callback(h: Harness, demo: DemoService) -> WorkflowHandle[Any, Any]:
    handle = await start(h, "callback", demo, completion="callback", input={"work_seconds": 1})
    result = await handle.result()
    status = await status_of(handle)
    check(result.state is JobState.SUCCEEDED and status.callbacks_received >= 1, f"callback: {status}")
    return handle


async def notify_and_action(h: Harness, demo: DemoService) -> WorkflowHandle[Any, Any]:
    handle = await start(
        h, "notify_and_action", demo,
        notify=[NotifyTarget(url=f"{h.endpoints_url}/notify", events=["submitted", "succeeded"])],
        actions=[ActionSpec(name="archive", url=f"{h.endpoints_url}/archive")],
    )
    result = await handle.result()
    check(result.actions.get("archive") == {"archived": True}, f"notify_and_action: {result}")
    check(h.notifications.get("submitted") == 1 and h.notifications.get("succeeded") == 1,
          f"notify_and_action: notifications {h.notifications}")
    return handle


async def default_mode_success(h: Harness, demo: DemoService) -> WorkflowHandle[Any, Any]:
    """The default poll mode (activity, behind the ``default-poll-mode-activity`` patch) to success."""
    return await success(h, demo, "default_mode_success", poll_mode=None, input={"work_polls": 4})


async def default_mode_auth_pause_resume(h: Harness, demo: DemoService) -> WorkflowHandle[Any, Any]:
    return await auth_pause_resume(h, demo, "default_mode_auth_pause_resume", poll_mode=None)


Path_ = Callable[[Harness, DemoService], Awaitable[WorkflowHandle[Any, Any]]]
# Every path but continue-as-new runs on the server with default limits.
PATHS: dict[str, Path_] = {
    "success": success,
    "rate_limit": rate_limit,
    "auth_pause_resume": auth_pause_resume,
    "permanent_error": permanent_error,
    "error_limit": error_limit,
    "timeout": timeout,
    "cancel": cancel,
    "callback": callback,
    "notify_and_action": notify_and_action,
    "default_mode_success": default_mode_success,
    "default_mode_auth_pause_resume": default_mode_auth_pause_resume,
}
CHAIN_PATHS: dict[str, Path_] = {"continue_as_new": continue_as_new}


# -- plumbing ----------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def endpoints(notifications: dict[str, int]) -> AsyncIterator[str]:
    """``POST /notify`` counts notifications by event; ``POST /archive`` answers an action with JSON."""

    async def notify(request: web.Request) -> web.Response:
        event = (await request.json()).get("event", "?")
        notifications[event] = notifications.get(event, 0) + 1
        return web.json_response({"ok": True})

    async def archive(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"archived": True})

    app = web.Application()
    app.router.add_post("/notify", notify)
    app.router.add_post("/archive", archive)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def dev_server(*extra_args: str) -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        search_attributes=list(SEARCH_ATTRIBUTE_KEYS),
        data_converter=pydantic_data_converter,
        ui=False,
        dev_server_log_level="error",
        dev_server_extra_args=list(extra_args),
    )


async def runs_of(client: Client, handle: WorkflowHandle[Any, Any]) -> list[WorkflowHistory]:
    """The history of every run of the chain that ``handle``'s first run started, in order."""
    histories = []
    run_id = handle.first_execution_run_id or handle.result_run_id
    while True:
        history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        histories.append(history)
        last = history.events[-1]
        if last.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            return histories
        run_id = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id


async def record_path(h: Harness, name: str, path: Path_, out: Path) -> list[str]:
    """Drive one path on its own demo service and write its histories to ``out``; return the file names."""
    async with running_demo_service(token=TOKEN, admin_key=ADMIN_KEY) as demo:
        handle = await asyncio.wait_for(path(h, demo), timeout=PATH_TIMEOUT_SECONDS)
    histories = await runs_of(h.client, handle)
    names = []
    for n, history in enumerate(histories, start=1):
        file_name = f"{name}.json" if len(histories) == 1 else f"{name}-run{n}.json"
        (out / file_name).write_text(history.to_json() + "\n")
        names.append(file_name)
    return names


@contextlib.asynccontextmanager
async def harness(env: WorkflowEnvironment, http: httpx.AsyncClient, endpoints_url: str,
                  notifications: dict[str, int]) -> AsyncIterator[Harness]:
    """A worker with the current workflow code on ``env``, and a callback receiver it hands out URLs of."""
    settings = ReceiverSettings(token_secret=CALLBACK_SECRET, signing_secret=DEFAULT_WEBHOOK_SECRET)
    async with running_receiver(env.client, settings) as receiver:
        environ = {"DEMO_API_TOKEN": TOKEN, "CALLBACK_BASE_URL": receiver.url, "CALLBACK_SECRET": CALLBACK_SECRET}
        task_queue = f"replay-recording-{uuid.uuid4()}"
        async with new_worker(env.client, http, task_queue=task_queue, environ=environ):
            yield Harness(env.client, task_queue, http, endpoints_url, notifications)


async def record(out: Path) -> list[str]:
    suggest = f"limit.historyCount.suggestContinueAsNew={SUGGEST_CONTINUE_AS_NEW_AFTER}"
    plain, chained = await asyncio.gather(dev_server(), dev_server("--dynamic-config-value", suggest))
    notifications: dict[str, int] = {}
    async with (
        plain,
        chained,
        httpx.AsyncClient() as http,
        endpoints(notifications) as endpoints_url,
        harness(plain, http, endpoints_url, notifications) as on_plain,
        harness(chained, http, endpoints_url, notifications) as on_chained,
    ):
        jobs = [record_path(on_plain, name, path, out) for name, path in PATHS.items()]
        jobs += [record_path(on_chained, name, path, out) for name, path in CHAIN_PATHS.items()]
        written = await asyncio.gather(*jobs)
    return sorted(name for names in written for name in names)


def main() -> int:
    began = time.monotonic()
    HISTORIES.mkdir(exist_ok=True)
    # Written aside first: a failed recording leaves the committed histories as they were.
    with tempfile.TemporaryDirectory(prefix="replay-histories-") as scratch:
        try:
            names = asyncio.run(record(Path(scratch)))
        except BaseException:
            traceback.print_exc()
            print("recording failed; tests/replay/histories/ left unchanged", file=sys.stderr)
            return 1
        for old in HISTORIES.glob("*.json"):
            old.unlink()
        for name in names:
            shutil.copyfile(Path(scratch) / name, HISTORIES / name)
    for name in names:
        print(f"{(HISTORIES / name).stat().st_size:>8} bytes  tests/replay/histories/{name}")
    print(f"recorded {len(names)} histories in {time.monotonic() - began:.1f} s")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The SDK's core runtime can abort at interpreter exit; nothing is left to clean up by now.
    os._exit(code)
