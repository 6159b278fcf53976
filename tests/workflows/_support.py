"""Shared helpers of the workflow tests: drive the demo service, start jobs, read histories, wait for states."""


from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowQueryFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from demo_service import DemoService
from tests.conftest import demo_request, unique_id
from workflows import JobResult, JobState, JobStatus, LongRunningJob

ADMIN_HEADERS = {"X-Admin-Key": "test-admin"}



async def inject(http: httpx.AsyncClient, demo: DemoService, **fault: Any) -> None:
    """Queue one fault on the demo service (POST /admin/faults)."""
    response = await http.post(f"{demo.url}/admin/faults", json=fault, headers=ADMIN_HEADERS)
    assert response.status_code == 200, response.text


async def clear_faults(http: httpx.AsyncClient, demo: DemoService) -> None:
    response = await http.delete(f"{demo.url}/admin/faults", headers=ADMIN_HEADERS)
    assert response.status_code == 200, response.text


_started: list[WorkflowHandle[Any, Any]] = []


def track(handle: WorkflowHandle[Any, Any]) -> WorkflowHandle[Any, Any]:
    """Have ``no_leftover_workflows`` terminate this run if the test ends while it still runs."""
    _started.append(handle)
    return handle


async def start(client: Client, demo: DemoService, task_queue: str, **fields: Any) -> WorkflowHandle[Any, JobResult]:
    """Start a LongRunningJob on the demo service with its own workflow id."""
    return track(
        await client.start_workflow(LongRunningJob.run, demo_request(demo, **fields), id=unique_id(),
                                    task_queue=task_queue)
    )


async def timers(handle: WorkflowHandle[Any, Any]) -> list[float]:
    """The durations (seconds) of every timer the run started, in order."""
    durations = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            timeout = event.timer_started_event_attributes.start_to_fire_timeout
            durations.append(timeout.ToTimedelta().total_seconds())
    return durations


async def status_of(handle: WorkflowHandle[Any, Any]) -> JobStatus:
    status: JobStatus = await handle.query(LongRunningJob.status)
    return status


async def wait_for_status(
    handle: WorkflowHandle[Any, Any], predicate: Callable[[JobStatus], bool], what: str
) -> JobStatus:
    """Poll the status query until ``predicate`` holds (a bounded wait, never a timing assertion)."""
    last: JobStatus | None = None
    for _ in range(400):
        try:
            last = await status_of(handle)
        except (RPCError, WorkflowQueryFailedError):
            last = None  # not queryable yet: its first workflow task has not run
        else:
            if predicate(last):
                return last
        await asyncio.sleep(0.05)
    pytest.fail(f"the job never got to {what}; last status: {last}")


async def wait_for_state(handle: WorkflowHandle[Any, Any], state: JobState) -> JobStatus:
    return await wait_for_status(handle, lambda s: s.state is state, state.value)


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"never happened: {what}")


# A bound on a run that cannot end (a workflow task failing over and over retries for ever): not a timing check.
HANG_GUARD_SECONDS = 30


async def result_of(handle: WorkflowHandle[Any, JobResult]) -> JobResult:
    """The run's result (time skips meanwhile), or TimeoutError instead of a hang."""
    return await asyncio.wait_for(handle.result(), timeout=HANG_GUARD_SECONDS)


async def failure_of(handle: WorkflowHandle[Any, Any]) -> ApplicationError:
    """Wait for the run to fail and return its ApplicationError."""
    with pytest.raises(WorkflowFailureError) as caught:
        await result_of(handle)
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError), repr(cause)
    return cause


def only_job(demo: DemoService) -> tuple[str, Any]:
    assert len(demo.state.jobs) == 1, demo.state.jobs
    [(job_id, job)] = demo.state.jobs.items()
    return job_id, job

