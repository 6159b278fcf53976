"""Prometheus metrics on one port: the SDK's own and the project's, all through Temporal's runtime.

``python worker.py --metrics-port N`` builds a :class:`~temporalio.runtime.Runtime` whose Prometheus exporter
serves ``http://HOST:N/metrics`` and makes it the process's default runtime before the client connects; the
client, the worker and every metric meter (the SDK's, ``workflow.metric_meter()`` and the gauge here) then
report there. What the workflow records is in ``workflows/_metrics.py``.

The one number that is not an event, "jobs paused for auth right now", comes from visibility and not from
workflow code: a workflow can only report transitions, and only once (never on replay), on whichever worker
ran that task, so a per-process sum of +1/-1 would drift with every restart, cache eviction or second
worker. The worker instead counts ``JobState="auth_paused"`` runs of its task queue every
:data:`PAUSED_REFRESH_SECONDS` and sets the gauge. Every worker of a task queue reports the same number:
aggregate it with ``max``, not ``sum``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator

from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from longjobs._connection import UserError
from workflows import JOB_API, WORKFLOW_TYPE
from workflows._metrics import AUTH_PAUSE_SECONDS

log = logging.getLogger("longjobs.metrics")

DEFAULT_METRICS_HOST = "127.0.0.1"
# How often the worker asks visibility how many jobs are paused (one small list call per refresh).
PAUSED_REFRESH_SECONDS = 15.0
# Past this many paused jobs the per-API breakdown stops; the rest is counted under api="_other".
MAX_LISTED_PAUSED = 10_000
OTHER_API = "_other"
UNKNOWN_API = "unknown"  # a run started before the JobApi search attribute existed

JOBS_AUTH_PAUSED = "longjobs_jobs_auth_paused"
# An auth pause lasts as long as a person takes: seconds to days (the default pause timeout is 7 days).
AUTH_PAUSE_BUCKETS: tuple[float, ...] = (
    1, 5, 15, 30, 60, 300, 900, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 86400, 2 * 86400, 7 * 86400,
)


def bind_address(host: str, port: int) -> str:
    """``host:port`` as the exporter wants it (an IPv6 address in brackets)."""
    if not 0 < port < 65536:
        raise UserError(f"metrics port must be between 1 and 65535, not {port}")
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def metrics_runtime(port: int, host: str = DEFAULT_METRICS_HOST) -> Runtime:
    """A runtime serving Prometheus metrics on ``host:port``; the port is bound at once."""
    address = bind_address(host, port)
    try:
        return Runtime(
            telemetry=TelemetryConfig(
                metrics=PrometheusConfig(
                    bind_address=address,
                    histogram_bucket_overrides={AUTH_PAUSE_SECONDS: list(AUTH_PAUSE_BUCKETS)},
                )
            )
        )
    except ValueError as exc:  # "Failed starting Prometheus exporter: Address already in use (os error 98)"
        reason = str(exc).removeprefix("Failed starting Prometheus exporter: ")
        raise UserError(f"cannot serve metrics on {address}: {reason}") from None


def install_metrics_runtime(port: int, host: str = DEFAULT_METRICS_HOST) -> Runtime:
    """Make a metrics runtime the process default, so every client connected afterwards reports to it.

    Must run before the first Temporal client of the process is created.
    """
    runtime = metrics_runtime(port, host)
    try:
        Runtime.set_default(runtime, error_if_already_set=True)
    except RuntimeError:
        raise UserError("metrics must be set up before the first Temporal client of the process") from None
    return runtime


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def paused_jobs_query(task_queue: str) -> str:
    """The visibility query for the running jobs of ``task_queue`` that wait for ``resume``."""
    return (
        f"WorkflowType={_quoted(WORKFLOW_TYPE)} AND ExecutionStatus='Running' AND JobState='auth_paused' "
        f"AND TaskQueue={_quoted(task_queue)}"
    )


async def count_paused_jobs(client: Client, *, task_queue: str, limit: int = MAX_LISTED_PAUSED) -> dict[str, int]:
    """How many jobs of ``task_queue`` are paused for auth right now, by API (``JobApi``)."""
    query = paused_jobs_query(task_queue)
    counts: Counter[str] = Counter()
    listed = 0
    async for execution in client.list_workflows(query, limit=limit):
        counts[execution.typed_search_attributes.get(JOB_API) or UNKNOWN_API] += 1
        listed += 1
    if listed >= limit:  # visibility does not group by a custom attribute: count the rest in one call
        rest = (await client.count_workflows(query)).count - listed
        if rest > 0:
            counts[OTHER_API] += rest
    return dict(counts)


def _runtime_of(client: Client) -> Runtime:
    return client.service_client.config.runtime or Runtime.default()


@contextlib.asynccontextmanager
async def reporting_paused_jobs(
    client: Client, *, task_queue: str, interval: float = PAUSED_REFRESH_SECONDS
) -> AsyncIterator[None]:
    """While open, keep ``longjobs_jobs_auth_paused{api}`` current on the metrics of ``client``'s runtime.

    Does nothing when that runtime reports no metrics. An API whose paused jobs all resumed reports 0 (not
    nothing) from then on; a failed refresh is logged and the last values stay.
    """
    meter = _runtime_of(client).metric_meter
    if meter is MetricMeter.noop:
        yield
        return
    gauge = meter.with_additional_attributes({"namespace": client.namespace, "task_queue": task_queue}).create_gauge(
        JOBS_AUTH_PAUSED, "Jobs of this task queue paused until credentials are fixed (from visibility)"
    )
    known: set[str] = set()

    async def refresh_forever() -> None:
        while True:
            try:
                counts = await count_paused_jobs(client, task_queue=task_queue)
            except Exception as exc:  # an RPC error, a timeout: the next refresh tries again
                log.warning("cannot count paused jobs: %s", exc)
            else:
                known.update(counts)
                for api in sorted(known):
                    gauge.set(counts.get(api, 0), {"api": api})
            await asyncio.sleep(interval)

    task = asyncio.create_task(refresh_forever(), name="longjobs-paused-jobs-gauge")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
