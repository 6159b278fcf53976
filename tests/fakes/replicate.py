"""Replicate predictions: ``POST /v1/predictions``, ``GET /v1/predictions/{id}``, ``POST .../{id}/cancel``.

Statuses go starting → processing → succeeded | failed | canceled; input ``{"fail": true}`` fails.
"""

from __future__ import annotations

import base64
import os
from typing import Any

from aiohttp import web

from ._base import ApiError, Job, Route, Shape, origin, phrase, read_json, rfc3339, state_of

OUTPUT = ["https://example.invalid/out.png"]
FAILURE = "prediction failed: fake error"
_STATUS = {"queued": "starting", "running": "processing", "succeeded": "succeeded", "failed": "failed"}


def error(status: int, message: str | None = None) -> web.Response:
    headers = {}
    if status == 401:
        body: dict[str, Any] = {"title": "Unauthenticated", "detail": "You did not pass a valid authentication token"}
    elif status == 404:
        body = {"detail": "Not found."}
    elif status == 429:
        body = {"detail": "Request was throttled. Expected available in 2 seconds."}
        headers["Retry-After"] = "2"
    else:
        body = {"title": phrase(status), "detail": message or phrase(status)}
    if message is not None:
        body["detail"] = message
    if status != 404:
        body["status"] = status
    return web.json_response(body, status=status, headers=headers)


def prediction(request: web.Request, job: Job) -> dict[str, Any]:
    base = f"{origin(request)}/v1/predictions/{job.id}"
    status = _STATUS.get(job.phase, "canceled")
    reads = min(job.polls if job.cancelled_after is None else job.cancelled_after, job.polls_to_finish)
    out: dict[str, Any] = {
        "id": job.id,
        "model": "longjobs/fake",
        "version": job.extra["version"],
        "input": job.input,
        "logs": "".join(f"step {i}/{job.polls_to_finish}\n" for i in range(1, reads + 1)),
        "output": OUTPUT if status == "succeeded" else None,
        "error": FAILURE if status == "failed" else None,
        "status": status,
        "source": "api",
        "data_removed": False,
        "created_at": rfc3339(job.created_at),
        "started_at": rfc3339(job.started_at),
        "completed_at": rfc3339(job.ended_at),
        "urls": {"get": base, "cancel": f"{base}/cancel"},
    }
    if status == "succeeded" and job.started_at is not None and job.ended_at is not None:
        out["metrics"] = {"predict_time": round(job.ended_at - job.started_at, 3)}
    return out


async def create(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("version"), str):
        raise ApiError(422, "- version: Invalid type. Expected: string")
    job_input = body.get("input")
    if not isinstance(job_input, dict):
        raise ApiError(422, "- input: Invalid type. Expected: object")
    job_id = base64.b32encode(os.urandom(20)).decode().lower()[:26]
    job = state_of(request).add_job(job_id, job_input, fail=job_input.get("fail") is True, version=body["version"])
    return web.json_response(prediction(request, job), status=201)


async def get_prediction(request: web.Request) -> web.Response:
    job = state_of(request).job(request.match_info["id"])
    job.read()
    return web.json_response(prediction(request, job))


async def cancel_prediction(request: web.Request) -> web.Response:
    job = state_of(request).job(request.match_info["id"])
    job.cancel()
    return web.json_response(prediction(request, job))


SHAPE = Shape(
    name="replicate",
    error=error,
    routes=(
        Route("POST", "/v1/predictions", create, "submit"),
        Route("GET", "/v1/predictions/{id}", get_prediction, "poll"),
        Route("POST", "/v1/predictions/{id}/cancel", cancel_prediction, "cancel"),
    ),
)
