"""``new_worker``'s defaults: the options the project chooses over the SDK's, and that callers can still override."""

from __future__ import annotations

from datetime import timedelta

import httpx
from temporalio.testing import WorkflowEnvironment

from longjobs import new_worker
from longjobs._worker import MAX_CONCURRENT_ACTIVITIES, STICKY_QUEUE_SCHEDULE_TO_START_TIMEOUT


async def test_new_worker_waits_for_its_cached_workflows_and_allows_one_activity_per_followed_job(
    time_env: WorkflowEnvironment, http: httpx.AsyncClient, task_queue: str
) -> None:
    config = new_worker(time_env.client, http, task_queue=task_queue, environ={}).config()
    # The SDK's 10 s sends a busy worker's tasks to other workers, which replay whole histories.
    assert config.get("sticky_queue_schedule_to_start_timeout") == STICKY_QUEUE_SCHEDULE_TO_START_TIMEOUT
    assert STICKY_QUEUE_SCHEDULE_TO_START_TIMEOUT > timedelta(seconds=10)
    assert config.get("max_concurrent_activities") == MAX_CONCURRENT_ACTIVITIES


async def test_new_worker_options_can_be_overridden(
    time_env: WorkflowEnvironment, http: httpx.AsyncClient, task_queue: str
) -> None:
    config = new_worker(
        time_env.client, http, task_queue=task_queue, environ={},
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=5), max_concurrent_activities=7,
    ).config()
    assert config.get("sticky_queue_schedule_to_start_timeout") == timedelta(seconds=5)
    assert config.get("max_concurrent_activities") == 7
