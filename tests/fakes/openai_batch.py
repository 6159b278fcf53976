"""OpenAI Batch API: ``POST /v1/batches``, ``GET /v1/batches/{id}``, ``POST .../cancel``, file content.

Statuses: validating → in_progress → (finalizing, when there are reads to spare) → completed; ``input_file_id``
``"file-fail"`` fails in validating, ``"file-expire"`` ends ``expired``; a cancel shows ``cancelling`` until
the next read has seen it, then ``cancelled``.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from aiohttp import web

from ._base import ApiError, Job, Route, Shape, phrase, read_json, state_of

ENDPOINTS = ("/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions")
TOTAL = 10
WINDOW_SECONDS = 24 * 3600
VALIDATION_ERRORS = {
    "object": "list",
    "data": [{"code": "invalid_json_line", "message": "fake validation error", "param": None, "line": 1}],
}


def error(status: int, message: str | None = None) -> web.Response:
    body: dict[str, Any] = {"message": message or phrase(status), "type": "invalid_request_error", "param": None}
    headers = {}
    if status == 401:
        body.update(message=message or "Incorrect API key provided.", code="invalid_api_key")
    elif status == 429:
        body.update(message=message or "Rate limit reached", type="requests", code="rate_limit_exceeded")
        headers["retry-after"] = "2"
    else:
        body.update(type="server_error" if status >= 500 else "invalid_request_error", code=None)
    return web.json_response({"error": body}, status=status, headers=headers)


def _status(job: Job) -> str:
    phase, expire = job.phase, job.input["input_file_id"] == "file-expire"
    if phase == "cancelled":
        assert job.cancelled_after is not None
        return "cancelling" if job.polls - job.cancelled_after <= 1 else "cancelled"
    if phase == "failed":
        return "expired" if expire else "failed"
    if phase == "succeeded":
        return "completed"
    if phase == "queued" or (job.outcome == "fail" and not expire):
        return "validating"
    return "finalizing" if job.polls >= 2 and job.polls == job.polls_to_finish - 1 else "in_progress"


def batch(job: Job) -> dict[str, Any]:
    status = _status(job)
    reads = job.polls if job.cancelled_after is None else job.cancelled_after
    completed = TOTAL * min(reads, job.polls_to_finish) // max(1, job.polls_to_finish)
    if status in ("failed", "validating"):
        completed = 0
    elif status == "completed":
        completed = TOTAL
    elif status == "expired":
        completed = TOTAL * max(0, job.polls_to_finish - 1) // max(1, job.polls_to_finish)
    failed = TOTAL - completed if status == "expired" else 0
    ended = int(job.ended_at) if job.ended_at is not None else None
    created = int(job.created_at)
    return {
        "id": job.id,
        "object": "batch",
        "endpoint": job.input["endpoint"],
        "errors": VALIDATION_ERRORS if status == "failed" else None,
        "input_file_id": job.input["input_file_id"],
        "completion_window": job.input["completion_window"],
        "status": status,
        "output_file_id": job.extra["output_file_id"] if status in ("completed", "expired") else None,
        "error_file_id": job.extra["error_file_id"] if status == "expired" else None,
        "created_at": created,
        "in_progress_at": int(job.started_at) if job.started_at is not None and status != "failed" else None,
        "expires_at": created + WINDOW_SECONDS,
        "finalizing_at": ended if status == "completed" else None,
        "completed_at": ended if status == "completed" else None,
        "failed_at": ended if status == "failed" else None,
        "expired_at": ended if status == "expired" else None,
        "cancelling_at": ended if status in ("cancelling", "cancelled") else None,
        "cancelled_at": ended if status == "cancelled" else None,
        "request_counts": {"total": TOTAL, "completed": completed, "failed": failed},
        "metadata": job.input.get("metadata"),
    }


async def create(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    if not isinstance(body.get("input_file_id"), str):
        raise ApiError(400, "Missing required parameter: 'input_file_id'.")
    if body.get("endpoint") not in ENDPOINTS:
        raise ApiError(400, f"Invalid value for 'endpoint': expected one of {', '.join(ENDPOINTS)}.")
    if body.get("completion_window") != "24h":
        raise ApiError(400, "Invalid value for 'completion_window': expected '24h'.")
    if not isinstance(body.get("metadata", {}), dict | None):
        raise ApiError(400, "Invalid type for 'metadata': expected an object.")
    state = state_of(request)
    job = state.add_job(
        f"batch_{secrets.token_hex(12)}",
        body,
        fail=body["input_file_id"] in ("file-fail", "file-expire"),
        output_file_id=f"file-out-{secrets.token_hex(8)}",
        error_file_id=f"file-err-{secrets.token_hex(8)}",
    )
    return web.json_response(batch(job))


async def get_batch(request: web.Request) -> web.Response:
    job = state_of(request).job(request.match_info["id"], f"No batch found with id '{request.match_info['id']}'.")
    job.read()
    return web.json_response(batch(job))


async def cancel_batch(request: web.Request) -> web.Response:
    job = state_of(request).job(request.match_info["id"], f"No batch found with id '{request.match_info['id']}'.")
    job.cancel()
    return web.json_response(batch(job))


def _lines(job: Job, errors: bool) -> list[dict[str, Any]]:
    if errors:
        failure = {"code": "batch_expired", "message": "This request could not be executed before the window expired."}
        return [{"id": "batch_req_3", "custom_id": "r3", "response": None, "error": failure}]
    lines = []
    for n in (1, 2):
        body = {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "model": "fake-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"answer {n}"}}],
        }
        response = {"status_code": 200, "request_id": f"req_{n}", "body": body}
        lines.append({"id": f"batch_req_{n}", "custom_id": f"r{n}", "response": response, "error": None})
    return lines


async def file_content(request: web.Request) -> web.Response:
    file_id = request.match_info["file_id"]
    for job in state_of(request).jobs.values():
        status = _status(job)
        if file_id == job.extra["output_file_id"] and status in ("completed", "expired"):
            lines = _lines(job, errors=False)
        elif file_id == job.extra["error_file_id"] and status == "expired":
            lines = _lines(job, errors=True)
        else:
            continue
        text = "".join(json.dumps(line) + "\n" for line in lines)
        return web.Response(text=text, content_type="application/jsonl")
    raise ApiError(404, f"No such File object: {file_id}")


SHAPE = Shape(
    name="openai-batch",
    error=error,
    routes=(
        Route("POST", "/v1/batches", create, "submit"),
        Route("GET", "/v1/batches/{id}", get_batch, "poll"),
        Route("POST", "/v1/batches/{id}/cancel", cancel_batch, "cancel"),
        Route("GET", "/v1/files/{file_id}/content", file_content, "result"),
    ),
)
