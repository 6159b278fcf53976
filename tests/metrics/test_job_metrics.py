"""The project's metrics and the SDK's, scraped from one Prometheus endpoint while a real job runs.

A real dev server, the real demo service and a worker whose client is connected with a metrics runtime: the
job is rate limited once, pauses for auth (the token is rotated), is resumed once the token file is fixed, and
succeeds. The endpoint must show the polls by outcome, the pause while it lasts and the recoveries after.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from demo_service import DemoService
from longjobs import new_worker
from longjobs._metrics import AUTH_PAUSE_BUCKETS, metrics_runtime, reporting_paused_jobs
from tests.metrics._scrape import scrape_until, value
from tests.workflows._support import inject, result_of, start, status_of, wait_for_state
from workflows import JobState, LongRunningJob

ROTATED = "rotated-token-77b2"


async def test_metrics_show_polls_pause_and_recoveries(
    dev_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str], token_file: Path, metrics_port: int,
) -> None:
    runtime = metrics_runtime(metrics_port)
    client = await Client.connect(
        dev_env.client.service_client.config.target_host, namespace=dev_env.client.namespace,
        data_converter=pydantic_data_converter, runtime=runtime,
    )
    mine = {"task_queue": task_queue}
    paused = {**mine, "api": "demo"}
    await inject(http, demo, match="poll", status=429, times=1)
    async with (
        reporting_paused_jobs(client, task_queue=task_queue, interval=0.2),
        new_worker(client, http, task_queue=task_queue, environ=worker_environ),
    ):
        # The first poll is rate limited; the 2 s backoff leaves time to rotate the token before the next one,
        # which is then refused: the job pauses for auth in the middle of polling.
        handle = await start(
            client, demo, task_queue, time_skipping=False, input={"work_polls": 2}, poll_interval_seconds=0.2,
            initial_backoff_seconds=2,
        )
        await wait_for_state(handle, JobState.RATE_LIMITED)
        demo.state.token = ROTATED
        await wait_for_state(handle, JobState.AUTH_PAUSED)
        during = await scrape_until(
            http, metrics_port, lambda s: value(s, "longjobs_jobs_auth_paused", **paused) == 1, "one paused job"
        )
        assert value(during, "longjobs_auth_pauses_total", **mine, api="demo") == 1
        assert value(during, "longjobs_auth_pause_seconds_count", **mine) is None  # not over yet

        token_file.write_text(ROTATED)
        await handle.signal(LongRunningJob.resume, {"note": "rotated"})
        result = await result_of(handle)
        status = await status_of(handle)
        after = await scrape_until(
            http, metrics_port, lambda s: value(s, "longjobs_jobs_auth_paused", **paused) == 0, "no paused job"
        )
    assert result.state is JobState.SUCCEEDED
    assert status.total_error_count == 2  # the 429 and the 401

    # Polls by outcome class: each class the job met, as often as the job met it.
    assert value(after, "longjobs_polls_total", **mine, api="demo", outcome="rate_limit") == 1
    assert value(after, "longjobs_polls_total", **mine, api="demo", outcome="auth_required") == 1
    ok_polls = value(after, "longjobs_polls_total", **mine, api="demo", outcome="ok")
    assert ok_polls is not None and ok_polls >= 2
    assert value(after, "longjobs_polls_total", **mine) == status.poll_count
    # Jobs by terminal state.
    assert value(after, "longjobs_jobs_terminal_total", **mine, api="demo", state="succeeded") == 1
    assert value(after, "longjobs_jobs_terminal_total", **mine, state="failed") is None
    # The pause: one resume, one duration observed (workflow time, so a little over zero), in pause buckets.
    assert value(after, "longjobs_auth_pauses_total", **mine, api="demo") == 1
    assert value(after, "longjobs_auth_resumes_total", **mine, api="demo") == 1
    assert value(after, "longjobs_auth_pause_seconds_count", **mine, api="demo", outcome="resumed") == 1
    seconds = value(after, "longjobs_auth_pause_seconds_sum", **mine, api="demo", outcome="resumed")
    assert seconds is not None and 0 < seconds < 60
    bounds = {float(s.labels["le"]) for s in after if s.name == "longjobs_auth_pause_seconds_bucket"}
    assert bounds == {*map(float, AUTH_PAUSE_BUCKETS), float("inf")}
    # The workflow's labels come with every project metric.
    labels = next(s.labels for s in after if s.name == "longjobs_jobs_terminal_total")
    assert labels["workflow_type"] == "LongRunningJob" and labels["namespace"] == dev_env.client.namespace
    # The SDK's own metrics, on the same endpoint.
    completed = value(after, "temporal_workflow_completed_total", **mine, workflow_type="LongRunningJob")
    assert completed == 1
    assert value(after, "temporal_request_total", operation="StartWorkflowExecution") is not None



async def test_activity_poll_mode_counts_every_read(
    dev_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str], metrics_port: int,
) -> None:
    """The activity poll mode reports only eventful reads to the workflow; the counter still has them all."""
    client = await Client.connect(
        dev_env.client.service_client.config.target_host, namespace=dev_env.client.namespace,
        data_converter=pydantic_data_converter, runtime=metrics_runtime(metrics_port),
    )
    mine = {"task_queue": task_queue, "api": "demo"}
    async with new_worker(client, http, task_queue=task_queue, environ=worker_environ):
        handle = await start(
            client, demo, task_queue, time_skipping=False, input={"work_polls": 4}, poll_interval_seconds=0.2,
            poll_mode="activity",
        )
        result = await result_of(handle)
        status = await status_of(handle)
    assert result.state is JobState.SUCCEEDED and status.poll_count >= 4
    samples = await scrape_until(
        http, metrics_port, lambda s: value(s, "longjobs_jobs_terminal_total", **mine) == 1, "the job's end"
    )
    assert value(samples, "longjobs_polls_total", **mine, outcome="ok") == status.poll_count
    assert value(samples, "longjobs_polls_total", **mine) == status.poll_count
