"""OGC API - Processes 1.0: ``POST /processes/{id}/execution`` (async with ``Prefer: respond-async``), ``/jobs``.

Processes: ``echo`` and ``slow`` (five times ``polls_to_finish``); results are ``{"echo": <inputs>}``. Inputs
with ``"fail": true`` fail. Without ``Prefer: respond-async`` the process runs synchronously (200 results).
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from ._base import ApiError, Job, Route, Shape, origin, phrase, read_json, rfc3339, state_of

EXCEPTIONS = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
RESULTS_REL = "http://www.opengis.net/def/rel/ogc/1.0/results"
PROCESSES = ("echo", "slow")
_STATUS = {"queued": "accepted", "running": "running", "succeeded": "successful", "failed": "failed"}
_MESSAGE = {
    "accepted": "Job accepted",
    "running": "Job running",
    "successful": "Job finished",
    "failed": "Job failed: fake failure",
    "dismissed": "Job dismissed",
}


def error(status: int, message: str | None = None, kind: str | None = None) -> web.Response:
    body: dict[str, Any] = {"title": message or phrase(status)}
    if kind is not None:
        body = {"type": EXCEPTIONS + kind, **body}
    return web.json_response(body, status=status)


def status_info(request: web.Request, job: Job) -> dict[str, Any]:
    status = _STATUS.get(job.phase, "dismissed")
    links = []
    if status == "successful":
        href = f"{origin(request)}/jobs/{job.id}/results"
        links.append({"href": href, "rel": RESULTS_REL, "type": "application/json"})
    return {
        "jobID": job.id,
        "processID": job.extra["process"],
        "type": "process",
        "status": status,
        "message": _MESSAGE[status],
        "progress": job.progress,
        "created": rfc3339(job.created_at),
        "started": rfc3339(job.started_at),
        "finished": rfc3339(job.ended_at),
        "links": links,
    }


def _job(request: web.Request) -> Job | web.Response:
    job = state_of(request).jobs.get(request.match_info["job_id"])
    return job if job is not None else error(404, "No such job", "no-such-job")


async def execute(request: web.Request) -> web.Response:
    state = state_of(request)
    process = request.match_info["process"]
    if process not in PROCESSES:
        return error(404, "No such process", "no-such-process")
    body = await read_json(request)
    inputs = body.get("inputs", {}) if isinstance(body, dict) else None
    if not isinstance(inputs, dict):
        raise ApiError(400, 'body must be {"inputs": {...}}')
    job = state.add_job(str(uuid.uuid4()), inputs, fail=inputs.get("fail") is True, process=process)
    if process == "slow":
        job.polls_to_finish *= 5
    if "respond-async" not in request.headers.get("Prefer", ""):
        job.polls = job.polls_to_finish - 1  # synchronous execution: it is over before we answer
        job.read()
        if job.phase == "failed":
            return error(500, "Job failed: fake failure", "failed")
        return web.json_response({"echo": inputs})
    if state.foreign_location is not None:
        location = state.foreign_location
    else:
        location = f"{'' if state.relative_location else origin(request)}/jobs/{job.id}"
    return web.json_response(status_info(request, job), status=201, headers={"Location": location})


async def get_status(request: web.Request) -> web.Response:
    job = _job(request)
    if isinstance(job, web.Response):
        return job
    job.read()
    return web.json_response(status_info(request, job))


async def get_results(request: web.Request) -> web.Response:
    job = _job(request)
    if isinstance(job, web.Response):
        return job
    if job.phase != "succeeded":
        return error(404, "result not ready", "result-not-ready")
    return web.json_response({"echo": job.input})


async def dismiss(request: web.Request) -> web.Response:
    job = _job(request)
    if isinstance(job, web.Response):
        return job
    job.cancel()  # a job that already ended keeps its status
    return web.json_response(status_info(request, job))


SHAPE = Shape(
    name="ogc-processes",
    error=error,
    routes=(
        Route("POST", "/processes/{process}/execution", execute, "submit"),
        Route("GET", "/jobs/{job_id}", get_status, "poll"),
        Route("GET", "/jobs/{job_id}/results", get_results, "result"),
        Route("DELETE", "/jobs/{job_id}", dismiss, "cancel"),
    ),
)
