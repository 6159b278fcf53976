"""The same durable poll loop in DBOS (from PyPI), with its SQLite system database.

``poll_loop`` is a DBOS workflow: a step per poll (the same bearer-authenticated GET, with an httpx client
configured like ``longjobs.new_http_client()``), a durable ``DBOS.sleep_async`` between polls; it ends when the
job does. DBOS runs as a library inside this process: the process that starts the workflows runs them, and
each step and each sleep is a row written to the SQLite file before the loop goes on. Everything is DBOS's
default configuration but the database URL and the log level.

Imported only by the DBOS worker process (the decorators register in DBOS's process-wide registry).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from dbos import DBOS, SetWorkflowID

TERMINAL = ("succeeded", "failed", "cancelled")

_state: dict[str, Any] = {}


def http_client() -> httpx.AsyncClient:
    """The settings of ``longjobs.new_http_client()``, without importing temporalio into this process."""
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        follow_redirects=False,
        timeout=httpx.Timeout(30.0, connect=5.0),
    )


@DBOS.step(name="poll")
async def poll_step(url: str) -> dict[str, Any]:
    http: httpx.AsyncClient = _state["http"]
    response = await http.get(url, headers=_state["headers"])
    response.raise_for_status()
    body = response.json()
    return {"status": str(body["status"]), "progress": body.get("progress")}


@DBOS.workflow(name="poll_loop")
async def poll_loop(url: str, interval_seconds: float) -> dict[str, Any]:
    while True:
        result = await poll_step(url)
        if result["status"] in TERMINAL:
            return result
        await DBOS.sleep_async(interval_seconds)


async def run(
    *, db_path: str, api_url: str, token: str, ids: list[str], interval: float,
    pace: Callable[[int, Callable[[int], Awaitable[None]]], Awaitable[None]],
) -> None:
    """Launch DBOS on a fresh SQLite file and start one loop per id (paced by ``pace``)."""
    _state["http"] = http_client()
    _state["headers"] = {"Authorization": f"Bearer {token}"}
    DBOS(config={"name": "bench-polling", "system_database_url": f"sqlite:///{db_path}", "log_level": "WARNING"})
    DBOS.launch()  # as in DBOS's own async examples: called on the event loop, brief

    async def start(i: int) -> None:
        with SetWorkflowID(ids[i]):
            await DBOS.start_workflow_async(poll_loop, f"{api_url}/jobs/{ids[i]}", interval)

    await pace(len(ids), start)
