"""The ``ogc-processes`` preset against a real OGC API - Processes server: pygeoapi, from PyPI, on loopback.

Nobody here wrote pygeoapi, so these tests check the preset against what a real server does rather than
against our reading of the standard (``tests/fakes/ogc_processes.py``). The workflow runs on the time-skipping
server; every HTTP call goes to pygeoapi. pygeoapi's asynchronous jobs run in a thread and are usually over
by the first poll.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment

from jobspec import ApiSpec, load_spec, resolve_spec
from longjobs import new_worker
from tests.conftest import unique_id
from workflows import JobRequest, JobResult, JobState, LongRunningJob

HELLO_INPUT = {"name": "longjobs", "message": "hi"}
# pygeoapi's HelloWorld process, asked for its raw result: its one output, as pygeoapi stores it.
HELLO_OUTPUT = {"id": "echo", "value": "Hello longjobs! hi"}


def ogc_spec(url: str, process: str = "hello-world") -> ApiSpec:
    return resolve_spec(load_spec("ogc-processes"), {"base_url": url, "process": process}, {})


async def start_job(
    env: WorkflowEnvironment, task_queue: str, spec: ApiSpec, job_input: Any, *, poll_interval: float = 1
) -> WorkflowHandle[Any, JobResult]:
    # Timers: the time-skipping server skips workflow timers, not waits inside an activity.
    request = JobRequest(
        api="ogc-processes", spec=spec, input=job_input, publish_job_state=False, poll_interval_seconds=poll_interval,
        poll_mode="timer",
    )
    return await env.client.start_workflow(LongRunningJob.run, request, id=unique_id("pygeoapi"), task_queue=task_queue)


async def run_job(
    env: WorkflowEnvironment, http: httpx.AsyncClient, task_queue: str, spec: ApiSpec, job_input: Any
) -> JobResult:
    # No OGC_API_TOKEN: the preset's bearer auth is optional, and pygeoapi asks for none.
    async with new_worker(env.client, http, task_queue=task_queue, environ={}):
        return await (await start_job(env, task_queue, spec, job_input)).result()


async def _job_on_server(http: httpx.AsyncClient, url: str, job_id: str) -> dict[str, Any]:
    response = await http.get(f"{url}/jobs/{job_id}", params={"f": "json"})
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


async def test_hello_world_runs_to_success_through_the_preset(
    time_env: WorkflowEnvironment, http: httpx.AsyncClient, task_queue: str, pygeoapi_url: str
) -> None:
    result = await run_job(time_env, http, task_queue, ogc_spec(pygeoapi_url), HELLO_INPUT)
    assert result.state is JobState.SUCCEEDED
    # pygeoapi negotiates the results' format; the preset asks for JSON with ?f=json (else it answers HTML).
    assert result.result == HELLO_OUTPUT
    assert "Hello longjobs!" in result.result["value"]
    assert result.poll_count >= 1  # the status was read at pygeoapi's Location header
    assert result.total_error_count == 0
    # The job id came from the Location header (pygeoapi's 201 body is null); pygeoapi knows the job.
    job = await _job_on_server(http, pygeoapi_url, result.job_id)
    assert job["processID"] == "hello-world"
    assert job["status"] == "successful"


async def test_unknown_process_fails_permanently_with_404(
    time_env: WorkflowEnvironment, http: httpx.AsyncClient, task_queue: str, pygeoapi_url: str
) -> None:
    with pytest.raises(WorkflowFailureError) as failure:
        await run_job(time_env, http, task_queue, ogc_spec(pygeoapi_url, "no-such-process"), HELLO_INPUT)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "PermanentHttpError"
    # pygeoapi: 404 {"code": "NoSuchProcess", "description": "identifier not found"}
    assert cause.message == "submit: HTTP 404: identifier not found"


async def test_failed_process_carries_pygeoapi_message(
    time_env: WorkflowEnvironment, http: httpx.AsyncClient, task_queue: str, pygeoapi_url: str
) -> None:
    # HelloWorld raises without a name: pygeoapi accepts the job (201), then reports it "failed".
    with pytest.raises(WorkflowFailureError) as failure:
        await run_job(time_env, http, task_queue, ogc_spec(pygeoapi_url), {"message": "no name"})
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "JobFailed"
    assert "Cannot process without a name" in cause.message


async def test_cancel_dismisses_the_job_on_pygeoapi(
    time_env: WorkflowEnvironment, http: httpx.AsyncClient, task_queue: str, pygeoapi_url: str
) -> None:
    async with new_worker(time_env.client, http, task_queue=task_queue, environ={}):
        # Time skips only while a result is awaited: until the cancel, polls come every 0.2 real seconds.
        handle = await start_job(
            time_env, task_queue, ogc_spec(pygeoapi_url, "slow"), {"seconds": 60}, poll_interval=0.2
        )
        for _ in range(200):  # bounded: about ten seconds
            status = await handle.query(LongRunningJob.status)
            if status.state is JobState.POLLING and status.status_word is not None:  # a poll has answered
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"never polled: {status}")
        assert status.job_id is not None
        # pygeoapi 0.21 keeps a job "accepted" until its process returns; either word means "not over".
        assert status.status_word in ("accepted", "running")
        assert (await _job_on_server(http, pygeoapi_url, status.job_id))["status"] in ("accepted", "running")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    # The workflow sent DELETE /jobs/{id}: pygeoapi dismissed the job and forgot it.
    gone = await http.get(f"{pygeoapi_url}/jobs/{status.job_id}", params={"f": "json"})
    assert gone.status_code == 404, gone.text
