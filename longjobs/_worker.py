"""Building and running the worker: the workflow, the HTTP activities and their one shared HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import httpx
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities import MAX_REQUESTS_IN_FLIGHT, JobApiActivities
from longjobs._connection import UserError, connect_client
from workflows import TASK_QUEUE, LongRunningJob

log = logging.getLogger("longjobs.worker")

# Search attributes the workflow upserts. Upserting one the namespace does not know fails every workflow
# task, so the worker makes sure they exist before it takes any work.
SEARCH_ATTRIBUTES = {
    "JobState": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "JobApi": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
}


# Activities one worker runs at once. In the activity poll mode every job being followed holds one (a
# heartbeating coroutine that sleeps between polls, a few KiB), so this is how many jobs one worker can follow;
# the SDK's default of 100 would leave job 101 unpolled until another job changes. HTTP requests have their own,
# far smaller limit (MAX_REQUESTS_IN_FLIGHT).
MAX_CONCURRENT_ACTIVITIES = 10_000

# How long a workflow task may wait for this worker (which has the workflow cached) before the server hands it
# to any worker, which must then replay the whole history. The SDK's 10 s is short for a worker that is
# merely busy: at 2,000 jobs polled every second on 2 cores about one poll in ten timed out that way, and the
# replays made the worker busier still. A worker that died is not waited for this long: the server sends
# tasks straight to the shared queue once a sticky queue has had no poller for 10 s.
STICKY_QUEUE_SCHEDULE_TO_START_TIMEOUT = timedelta(seconds=60)


def new_http_client(max_connections: int = MAX_REQUESTS_IN_FLIGHT) -> httpx.AsyncClient:
    """The worker's one HTTP client; per-request timeouts come from each API spec."""
    return httpx.AsyncClient(
        # Every connection may stay open: a worker talks to a few APIs, and a closed one is a new TCP (and
        # TLS) handshake on the next poll.
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        follow_redirects=False,
        timeout=httpx.Timeout(30.0, connect=5.0),
    )


def new_worker(
    client: Client,
    http: httpx.AsyncClient,
    *,
    task_queue: str = TASK_QUEUE,
    environ: Mapping[str, str] | None = None,
    max_requests_in_flight: int = MAX_REQUESTS_IN_FLIGHT,
    **options: Any,
) -> Worker:
    """A worker for ``LongRunningJob`` and its activities.

    ``environ`` is where activities read credentials (default: the process environment); tests and the demo
    pass their own, along with their own task queue and worker options. ``max_requests_in_flight`` bounds
    the HTTP requests of all activities together (give the HTTP client as many connections).
    """
    job_api = JobApiActivities(http, environ=environ, max_requests_in_flight=max_requests_in_flight)
    options.setdefault("max_concurrent_activities", MAX_CONCURRENT_ACTIVITIES)
    options.setdefault("graceful_shutdown_timeout", timedelta(seconds=10))
    options.setdefault("sticky_queue_schedule_to_start_timeout", STICKY_QUEUE_SCHEDULE_TO_START_TIMEOUT)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[LongRunningJob],
        activities=[
            job_api.resolve_spec,
            job_api.submit_job,
            job_api.poll_job,
            job_api.watch_job,
            job_api.fetch_result,
            job_api.cancel_job,
            job_api.interpret_callback,
            job_api.send_notification,
            job_api.run_action,
            job_api.analyze_result,
        ],
        **options,
    )


async def ensure_search_attributes(client: Client) -> None:
    """Register the project's search attributes if the namespace lacks them; explain how when we cannot."""
    try:
        listed = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        missing = {name: kind for name, kind in SEARCH_ATTRIBUTES.items() if name not in listed.custom_attributes}
        if not missing:
            return
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
        log.info("registered search attributes %s", ", ".join(missing))
    except RPCError as exc:
        names = " and ".join(SEARCH_ATTRIBUTES)
        raise UserError(
            f"cannot check or register the search attribute {names} in namespace {client.namespace!r} "
            f"({exc.message}); register them once: temporal operator search-attribute create --name JobState "
            "--type Keyword --name JobApi --type Keyword (Temporal Cloud: tcld namespace search-attributes add)"
        ) from None


async def run_worker(
    *,
    task_queue: str = TASK_QUEUE,
    callbacks_port: int | None = None,
    callbacks_host: str = "127.0.0.1",
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    max_concurrent_activities: int = MAX_CONCURRENT_ACTIVITIES,
    max_requests_in_flight: int = MAX_REQUESTS_IN_FLIGHT,
) -> int:
    """Run until SIGTERM or SIGINT, then finish in-flight tasks (bounded) and return 0.

    With ``callbacks_port`` the callback receiver runs in this process too, and activities give APIs callback
    URLs on it (``CALLBACK_BASE_URL``, when set, says how the APIs reach it instead). With ``metrics_port``
    the SDK's and the project's metrics are served for Prometheus at ``http://HOST:PORT/metrics``.
    """
    from callbacks import ReceiverSettings, running_receiver
    from longjobs._metrics import install_metrics_runtime, reporting_paused_jobs

    settings = ReceiverSettings.from_environ(os.environ) if callbacks_port is not None else None
    if metrics_port is not None:
        install_metrics_runtime(metrics_port, metrics_host)  # before the client: it reports to this runtime
    client = await connect_client()
    await ensure_search_attributes(client)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        environ: dict[str, str] = dict(os.environ)
        if settings is not None and callbacks_port is not None:
            try:
                receiver = await stack.enter_async_context(
                    running_receiver(client, settings, host=callbacks_host, port=callbacks_port)
                )
            except OSError as exc:
                where = f"{callbacks_host}:{callbacks_port}"
                raise UserError(f"cannot serve callbacks on {where}: {exc.strerror}") from None
            environ.setdefault("CALLBACK_BASE_URL", receiver.url)
            log.info("callback receiver at %s (callback URLs: %s)", receiver.url, environ["CALLBACK_BASE_URL"])
        if metrics_port is not None:
            await stack.enter_async_context(reporting_paused_jobs(client, task_queue=task_queue))
            log.info("metrics at http://%s:%d/metrics", metrics_host, metrics_port)
        http = await stack.enter_async_context(new_http_client(max_requests_in_flight))
        worker = new_worker(
            client, http, task_queue=task_queue, environ=environ, max_requests_in_flight=max_requests_in_flight,
            max_concurrent_activities=max_concurrent_activities,
        )
        async with worker:
            log.info("worker running on task queue %r at %s", task_queue, client.service_client.config.target_host)
            await stop.wait()
            log.info("shutting down")
    return 0
