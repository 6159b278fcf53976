"""The README's story, as a new user runs it: dev server, demo service, worker.py, starter.py, temporal CLI."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
from typing import Any

import httpx
from temporalio.testing import WorkflowEnvironment

from demo_service import DEFAULT_WEBHOOK_SECRET, DemoService
from tests.conftest import DEMO_TOKEN, decoded_json_text, register_secret, unique_id
from tests.e2e.conftest import Cli, eventually

ADMIN = {"X-Admin-Key": "test-admin"}
ROTATED_TOKEN = register_secret("rotated-token-77")
CALLBACK_SECRET = register_secret("e2e-callback-secret")


async def _status(cli: Cli, workflow_id: str) -> dict[str, Any]:
    done = await cli.starter("status", workflow_id, "--json")
    assert done.returncode == 0, done.stderr
    status: dict[str, Any] = json.loads(done.stdout)
    return status




async def test_rate_limit_then_auth_pause_then_cli_resume(
    cli: Cli, worker: asyncio.subprocess.Process, demo: DemoService, http: httpx.AsyncClient
) -> None:
    await http.post(f"{demo.url}/admin/faults", headers=ADMIN,
                    json={"match": "poll", "status": 429, "times": 2, "retry_after": "2"})
    workflow_id = unique_id("e2e-auth")
    started = await cli.starter("start", "--api", "demo", "--id", workflow_id, "--task-queue", cli.task_queue,
                                "--input", '{"work_polls": 6}', "--poll-interval", "1", "--initial-backoff", "1")
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == workflow_id

    async def rate_limits_done() -> bool:
        status = await _status(cli, workflow_id)
        return status["poll_count"] >= 3 and status["state"] == "polling"

    await eventually(rate_limits_done)
    status = await _status(cli, workflow_id)
    assert status["total_error_count"] == 2
    assert status["last_error"]["http_status"] == 429

    demo.state.token = ROTATED_TOKEN  # the API rotates its token: the worker's file is stale now

    async def paused() -> bool:
        return (await _status(cli, workflow_id))["state"] == "auth_paused"

    await eventually(paused)
    listed = await cli.temporal("workflow", "list", "--query", 'JobState="auth_paused"')
    assert workflow_id in listed.stdout
    polls_when_paused = demo.state.poll_requests
    await asyncio.sleep(3)  # several poll intervals: a paused job must not poll
    assert demo.state.poll_requests == polls_when_paused

    cli.token_file.write_text(ROTATED_TOKEN)
    signalled = await cli.temporal("workflow", "signal", "--workflow-id", workflow_id, "--name", "resume")
    assert signalled.returncode == 0, signalled.stderr
    result = await cli.starter("result", workflow_id, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    body = json.loads(result.stdout)
    assert body["state"] == "succeeded"
    assert demo.state.jobs_created == 1

    shown = await cli.temporal("workflow", "show", "--workflow-id", workflow_id, "--output", "json")
    history = decoded_json_text(shown.stdout)
    assert '"events"' in shown.stdout
    assert "auth_paused" in history  # the decoding works: the search attribute upsert is in there
    for secret in (DEMO_TOKEN, ROTATED_TOKEN):
        assert secret not in history
        assert secret not in cli.worker_log.read_text()


async def test_worker_killed_mid_polling_finishes_with_one_job(
    cli: Cli, worker: asyncio.subprocess.Process, demo: DemoService
) -> None:
    workflow_id = unique_id("e2e-crash")
    started = await cli.starter("start", "--api", "demo", "--id", workflow_id, "--task-queue", cli.task_queue,
                                "--input", '{"work_polls": 8}', "--poll-interval", "1")
    assert started.returncode == 0, started.stderr

    async def polling() -> bool:
        return (await _status(cli, workflow_id)).get("poll_count", 0) >= 2

    await eventually(polling)
    worker.send_signal(signal.SIGKILL)
    await worker.wait()
    replacement = await cli.start_worker()
    try:
        result = await cli.starter("result", workflow_id)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        replacement.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(replacement.wait(), 30) == 0
    assert demo.state.jobs_created == 1
    assert demo.state.submit_requests == 1


async def test_plain_temporal_cli_start_resolves_the_spec_on_the_worker(
    cli: Cli, worker: asyncio.subprocess.Process, demo: DemoService
) -> None:
    workflow_id = unique_id("e2e-cli")
    job = {"api": "demo", "input": {"work_polls": 2}, "poll_interval_seconds": 1}
    started = await cli.temporal("workflow", "start", "--type", "LongRunningJob", "--task-queue", cli.task_queue,
                                 "--workflow-id", workflow_id, "--input", json.dumps(job))
    assert started.returncode == 0, started.stderr
    result = await cli.starter("result", workflow_id)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded" in result.stdout
    assert demo.state.jobs_created == 1


async def test_failed_job_result_exits_1_with_the_reason(
    cli: Cli, worker: asyncio.subprocess.Process, demo: DemoService
) -> None:
    workflow_id = unique_id("e2e-fail")
    started = await cli.starter("start", "--api", "demo", "--id", workflow_id, "--task-queue", cli.task_queue,
                                "--input", '{"work_polls": 1, "fail": "GPU on fire"}', "--poll-interval", "1",
                                "--wait")
    assert started.returncode == 1
    lines = started.stdout.strip().splitlines()
    assert lines[0] == workflow_id
    assert lines[1].startswith(f"job {workflow_id} failed: JobFailed:") and "GPU on fire" in lines[1]
    assert "Traceback" not in started.stderr


async def test_cancel_command_cancels_the_external_job(
    cli: Cli, worker: asyncio.subprocess.Process, demo: DemoService
) -> None:
    workflow_id = unique_id("e2e-cancel")
    await cli.starter("start", "--api", "demo", "--id", workflow_id, "--task-queue", cli.task_queue,
                      "--input", '{"work_polls": 1000}', "--poll-interval", "1")

    async def has_job() -> bool:
        return (await _status(cli, workflow_id)).get("job_id") is not None

    await eventually(has_job)
    cancelled = await cli.starter("cancel", workflow_id)
    assert cancelled.returncode == 0, cancelled.stderr
    result = await cli.starter("result", workflow_id)
    assert result.returncode == 1
    assert "cancelled" in result.stdout
    assert [job["status"] for job in demo.state.stats()["jobs"].values()] == ["cancelled"]
    assert (await _status(cli, workflow_id))["state"] == "cancelled"
    again = await cli.starter("cancel", workflow_id)
    assert again.returncode == 1


async def test_bad_input_is_one_line_exit_2_and_starts_nothing(cli: Cli, dev_env: WorkflowEnvironment) -> None:
    before = (await dev_env.client.count_workflows()).count
    cases = [
        ("status", unique_id("missing")),
        ("result", unique_id("missing")),
        ("resume", unique_id("missing")),
        ("cancel", unique_id("missing")),
        ("start", "--api", "no-such-api"),
        ("start", "--api", "demo", "--input", "{not json"),
        ("start", "--api", "demo", "--poll-interval", "-1"),
        ("start", "--api", "demo", "--timeout", "soon"),
        ("start", "--api", "demo", "--var", "nonsense"),
        ("start", "--api", "demo", "--input-file", "/no/such/file.json"),
        ("start", "--api", "demo", "--max-polls", "0"),
        ("frobnicate",),
    ]
    for args in cases:
        done = await cli.starter(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, args
        assert len(done.stderr.strip().splitlines()) <= 3, (args, done.stderr)  # argparse adds its usage lines
        assert "error:" in done.stderr, args
    unreachable = dict(cli.env, TEMPORAL_ADDRESS="127.0.0.1:1")
    done = await Cli(unreachable, cli.address, cli.task_queue, cli.token_file, cli.worker_log).starter("status", "x")
    assert done.returncode == 2 and "cannot reach Temporal" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert (await dev_env.client.count_workflows()).count == before


async def test_demo_command_runs_the_whole_story(cli: Cli) -> None:
    done = await cli.starter("demo", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "auth_paused" in done.stdout
    assert "429" in done.stdout
    assert "created exactly 1 job" in done.stdout
    assert "Traceback" not in done.stderr


async def test_completion_by_callback_through_worker_receiver(cli: Cli, demo: DemoService) -> None:
    port = free_port()
    env = dict(cli.env, CALLBACK_SECRET=CALLBACK_SECRET, CALLBACK_SIGNING_SECRET=DEFAULT_WEBHOOK_SECRET)
    worker = await cli.start_worker("--callbacks-port", str(port), env=env)
    try:
        workflow_id = unique_id("e2e-callback")
        done = await cli.starter("start", "--api", "demo", "--id", workflow_id, "--task-queue", cli.task_queue,
                                 "--completion", "callback", "--input", '{"work_seconds": 2}', "--wait")
        assert done.returncode == 0, done.stdout + done.stderr
        assert demo.state.callbacks_sent == 1
        assert demo.state.poll_requests == 1  # the one GET that confirms the callback; no polling
        status = await _status(cli, workflow_id)
        assert status["callbacks_received"] == 1
        assert CALLBACK_SECRET not in cli.worker_log.read_text()
    finally:
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 30) == 0, cli.worker_log.read_text()[-2000:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
