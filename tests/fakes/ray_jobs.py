"""Ray Job Submission REST API: ``POST /api/jobs/``, ``GET /api/jobs/{id}``, ``POST .../stop``, ``.../logs``.

Errors are plain text, as in Ray. A caller-chosen ``submission_id`` that is taken gets Ray's 500 and creates
nothing; an entrypoint containing ``exit 1`` ends FAILED.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from ._base import ApiError, Job, Route, Shape, phrase, read_json, state_of

LOGS = "hello from the fake ray job\n"
_STATUS = {"queued": "PENDING", "running": "RUNNING", "succeeded": "SUCCEEDED", "failed": "FAILED"}
_MESSAGE = {
    "PENDING": "Job has not started yet. It may be waiting for resources (CPUs, GPUs, custom resources) to become "
    "available.",
    "RUNNING": "Job is currently running.",
    "SUCCEEDED": "Job finished successfully.",
    "FAILED": "Job entrypoint command failed with exit code 1",
    "STOPPED": "Job was intentionally stopped.",
}


def error(status: int, message: str | None = None) -> web.Response:
    return web.Response(status=status, text=message or phrase(status))


def details(job: Job) -> dict[str, Any]:
    status = _STATUS.get(job.phase, "STOPPED")
    return {
        "type": "SUBMISSION",
        "job_id": job.extra["job_id"] if job.started_at is not None else None,
        "submission_id": job.id,
        "driver_info": None,
        "status": status,
        "entrypoint": job.input["entrypoint"],
        "message": _MESSAGE[status],
        "error_type": "JOB_ENTRYPOINT_COMMAND_ERROR" if status == "FAILED" else None,
        "start_time": int(job.created_at * 1000),
        "end_time": int(job.ended_at * 1000) if job.ended_at is not None else None,
        "metadata": job.input.get("metadata") or {},
        "runtime_env": job.input.get("runtime_env") or {},
    }


def _job(request: web.Request) -> Job:
    job_id = request.match_info["id"]
    return state_of(request).job(job_id, f"Job {job_id} does not exist.")


async def submit(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("entrypoint"), str):
        raise ApiError(400, "JobSubmitRequest: 'entrypoint' is required and must be a string")
    submission_id = body.get("submission_id")
    if submission_id is None:
        submission_id = f"raysubmit_{secrets.token_hex(8)}"
    elif not isinstance(submission_id, str):
        raise ApiError(400, "JobSubmitRequest: 'submission_id' must be a string")
    elif submission_id in state.jobs:
        raise ApiError(
            500, f"Job with submission_id {submission_id} already exists. Please use a different submission_id."
        )
    fail = "exit 1" in body["entrypoint"]
    state.add_job(submission_id, body, fail=fail, job_id=f"{state.created + 1:02x}000000")
    return web.json_response({"submission_id": submission_id, "job_id": None})


async def get_job(request: web.Request) -> web.Response:
    job = _job(request)
    job.read()
    return web.json_response(details(job))


async def stop_job(request: web.Request) -> web.Response:
    return web.json_response({"stopped": _job(request).cancel()})


async def get_logs(request: web.Request) -> web.Response:
    _job(request)
    return web.json_response({"logs": LOGS})


SHAPE = Shape(
    name="ray-jobs",
    error=error,
    routes=(
        Route("POST", "/api/jobs/", submit, "submit"),
        Route("GET", "/api/jobs/{id}", get_job, "poll"),
        Route("POST", "/api/jobs/{id}/stop", stop_job, "cancel"),
        Route("GET", "/api/jobs/{id}/logs", get_logs, "result"),
    ),
)
