"""Google long-running operations (AIP-151): a create method returning an ``Operation``, polled and cancelled.

``POST /v1/projects/{p}/locations/{l}/jobs`` with any JSON body (``{"fail": true}`` fails) returns the Operation;
``GET .../operations/{op}`` polls it and ``POST .../operations/{op}:cancel`` cancels it (``{}``).
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from ._base import ApiError, Job, Route, Shape, phrase, read_json, state_of

METADATA_TYPE = "type.googleapis.com/longjobs.fake.Metadata"
RESPONSE_TYPE = "type.googleapis.com/longjobs.fake.Result"
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MESSAGE = {
    401: "Request had invalid authentication credentials.",
    404: "Requested entity was not found.",
    429: "Quota exceeded.",
}
_PREFIX = "/v1/projects/{project}/locations/{location}"


def error(status: int, message: str | None = None) -> web.Response:
    body = {
        "code": status,
        "message": message or _MESSAGE.get(status, phrase(status)),
        "status": _STATUS.get(status, "UNKNOWN"),
    }
    return web.json_response({"error": body}, status=status)


def operation(job: Job) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": job.extra["name"],
        "done": job.done,
        "metadata": {"@type": METADATA_TYPE, "progressPercent": job.progress},
    }
    if job.phase == "succeeded":
        out["response"] = {"@type": RESPONSE_TYPE, "output": "done", "input": job.input}
    elif job.phase == "failed":
        out["error"] = {"code": 13, "message": "internal failure in fake job"}
    elif job.phase == "cancelled":
        out["error"] = {"code": 1, "message": "Operation cancelled"}
    return out


def _job(request: web.Request) -> Job:
    m = request.match_info
    name = f"projects/{m['project']}/locations/{m['location']}/operations/{m['op']}"
    job = state_of(request).jobs.get(m["op"])
    if job is None or job.extra["name"] != name:
        raise ApiError(404, f"Operation {name} not found.")
    return job


async def create(request: web.Request) -> web.Response:
    body = await read_json(request)
    m = request.match_info
    op = f"op-{secrets.token_hex(8)}"
    name = f"projects/{m['project']}/locations/{m['location']}/operations/{op}"
    fail = isinstance(body, dict) and body.get("fail") is True
    return web.json_response(operation(state_of(request).add_job(op, body, fail=fail, name=name)))


async def get_operation(request: web.Request) -> web.Response:
    job = _job(request)
    job.read()
    return web.json_response(operation(job))


async def cancel_operation(request: web.Request) -> web.Response:
    _job(request).cancel()
    return web.json_response({})


SHAPE = Shape(
    name="google-lro",
    error=error,
    routes=(
        Route("POST", f"{_PREFIX}/jobs", create, "submit"),
        Route("GET", f"{_PREFIX}/operations/{{op:[^/:]+}}", get_operation, "poll"),
        Route("POST", f"{_PREFIX}/operations/{{op:[^/:]+}}:cancel", cancel_operation, "cancel"),
    ),
)
