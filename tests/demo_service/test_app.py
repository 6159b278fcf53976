"""Tests of the demo job service over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from demo_service import DemoService, running_demo_service

ROOT = Path(__file__).resolve().parents[2]
ADMIN = {"X-Admin-Key": "demo-admin"}


@pytest.fixture
async def service() -> AsyncIterator[DemoService]:
    async with running_demo_service(port=0) as svc:
        yield svc


@pytest.fixture
async def client(service: DemoService) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.url, headers={"Authorization": "Bearer demo-token"}, timeout=5) as c:
        yield c


async def add_fault(client: httpx.AsyncClient, **fault: Any) -> None:
    response = await client.post("/admin/faults", json=fault, headers=ADMIN)
    assert response.status_code == 200, response.text


async def submit(client: httpx.AsyncClient, **body: Any) -> str:
    response = await client.post("/jobs", json=body)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


async def test_submit_and_poll_to_success(client: httpx.AsyncClient) -> None:
    response = await client.post("/jobs", json={"work_polls": 2, "items": [1, 2, 3]})
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    assert body["id"].startswith("job_") and len(body["id"]) == 16
    assert response.headers["Location"] == f"/jobs/{body['id']}"

    first = (await client.get(f"/jobs/{body['id']}")).json()
    assert first == {"id": body["id"], "status": "running", "progress": 50}
    second = (await client.get(f"/jobs/{body['id']}")).json()
    assert second["status"] == "succeeded" and second["progress"] == 100
    assert second["result"]["input"] == {"items": [1, 2, 3]}
    assert second["result"]["output"].startswith("processed ")
    # An ended job stays ended however often it is polled.
    assert (await client.get(f"/jobs/{body['id']}")).json() == second


async def test_empty_body_is_allowed(client: httpx.AsyncClient) -> None:
    assert (await client.post("/jobs")).status_code == 202


async def test_time_based_job(client: httpx.AsyncClient, service: DemoService) -> None:
    assert (await client.get(f"/jobs/{await submit(client, work_seconds=0)}")).json()["status"] == "succeeded"

    job_id = await submit(client, work_seconds=1000)
    assert (await client.get(f"/jobs/{job_id}")).json()["status"] == "queued"
    # Move the creation time back rather than sleeping: half the work is "done".
    service.state.jobs[job_id].created -= 500
    assert (await client.get(f"/jobs/{job_id}")).json() == {"id": job_id, "status": "running", "progress": 50}
    service.state.jobs[job_id].created -= 500
    assert (await client.get(f"/jobs/{job_id}")).json()["status"] == "succeeded"


async def test_fail_knob(client: httpx.AsyncClient) -> None:
    job_id = await submit(client, work_polls=1, fail="out of paper")
    body = (await client.get(f"/jobs/{job_id}")).json()
    assert body["status"] == "failed" and body["error"] == "out of paper" and "result" not in body


async def test_idempotency_key(client: httpx.AsyncClient, service: DemoService) -> None:
    headers = {"Idempotency-Key": "k-1"}
    first = await client.post("/jobs", json={"work_polls": 3}, headers=headers)
    second = await client.post("/jobs", json={"work_polls": 3}, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    other = await submit(client)
    assert other != first.json()["id"]
    stats = (await client.get("/admin/stats", headers=ADMIN)).json()
    assert stats["jobs_created"] == 2 and stats["submit_requests"] == 3
    assert stats["jobs"][first.json()["id"]]["idempotency_key"] == "k-1"
    assert stats["jobs"][other]["idempotency_key"] is None


async def test_auth_and_token_rotation(client: httpx.AsyncClient, service: DemoService) -> None:
    for headers in ({"Authorization": "Bearer nope"}, {"Authorization": "demo-token"}):
        response = await client.post("/jobs", json={}, headers=headers)
        assert response.status_code == 401 and response.json() == {"error": "invalid or missing token"}
    async with httpx.AsyncClient(base_url=service.url) as anonymous:
        assert (await anonymous.get("/jobs/job_x")).status_code == 401

    response = await client.post("/admin/token", json={"token": "fresh"}, headers=ADMIN)
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert (await client.post("/jobs", json={})).status_code == 401
    assert (await client.post("/jobs", json={}, headers={"Authorization": "Bearer fresh"})).status_code == 202
    assert service.state.jobs_created == 1


async def test_not_found(client: httpx.AsyncClient) -> None:
    for response in (await client.get("/jobs/job_missing"), await client.post("/jobs/job_missing/cancel")):
        assert response.status_code == 404 and response.json() == {"error": "no such job"}
    assert (await client.get("/no/such/route")).status_code == 404


async def test_cancel(client: httpx.AsyncClient) -> None:
    job_id = await submit(client, work_polls=5)
    await client.get(f"/jobs/{job_id}")
    response = await client.post(f"/jobs/{job_id}/cancel")
    assert response.status_code == 200 and response.json() == {"id": job_id, "status": "cancelled", "progress": 20}
    assert (await client.get(f"/jobs/{job_id}")).json()["status"] == "cancelled"
    again = await client.post(f"/jobs/{job_id}/cancel")
    assert again.status_code == 409 and again.json() == {"error": "job already cancelled"}

    done = await submit(client, work_seconds=0)
    response = await client.post(f"/jobs/{done}/cancel")
    assert response.status_code == 409 and response.json() == {"error": "job already succeeded"}


async def test_fault_status_retry_after_and_times(client: httpx.AsyncClient, service: DemoService) -> None:
    await add_fault(client, match="submit", status=503, retry_after="7", times=2)
    for _ in range(2):
        response = await client.post("/jobs", json={})
        assert response.status_code == 503 and response.headers["Retry-After"] == "7"
        assert "error" in response.json()
    assert (await client.post("/jobs", json={})).status_code == 202
    assert service.state.jobs_created == 1 and service.state.submit_requests == 3


async def test_fault_match_selectivity_and_order(client: httpx.AsyncClient, service: DemoService) -> None:
    job_id = await submit(client, work_polls=9)
    await add_fault(client, match="cancel", status=502)
    await add_fault(client, match="poll", status=429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    await add_fault(client, match="any", status=500, times=2)
    assert (await client.post("/jobs", json={})).status_code == 500  # only "any" matches a submit
    polled = await client.get(f"/jobs/{job_id}")
    assert polled.status_code == 429 and polled.headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert (await client.post(f"/jobs/{job_id}/cancel")).status_code == 502
    assert (await client.get(f"/jobs/{job_id}")).status_code == 500
    assert service.state.faults == []
    # Faulted polls did not count as polls of the job.
    assert service.state.jobs[job_id].polls == 0
    assert (await client.get(f"/jobs/{job_id}")).json()["progress"] == 11


async def test_fault_applies_before_auth(service: DemoService, client: httpx.AsyncClient) -> None:
    await add_fault(client, match="poll", status=503)
    async with httpx.AsyncClient(base_url=service.url) as anonymous:
        assert (await anonymous.get("/jobs/whatever")).status_code == 503
        assert (await anonymous.get("/jobs/whatever")).status_code == 401


async def test_fault_body_verbatim(client: httpx.AsyncClient) -> None:
    await add_fault(client, match="poll", status=200, body='{"id": "job_1", "status": ')
    response = await client.get("/jobs/job_1")
    assert response.status_code == 200 and response.text == '{"id": "job_1", "status": '


async def test_fault_reset(client: httpx.AsyncClient, service: DemoService) -> None:
    await add_fault(client, match="submit", reset=True)
    with pytest.raises(httpx.TransportError):
        await client.post("/jobs", json={})
    assert service.state.jobs_created == 0
    assert (await client.post("/jobs", json={})).status_code == 202


async def test_fault_delay(client: httpx.AsyncClient) -> None:
    await add_fault(client, match="poll", status=200, delay_seconds=30)
    with pytest.raises(httpx.ReadTimeout):
        await client.get("/jobs/job_x", timeout=0.2)
    assert (await client.get("/jobs/job_x")).status_code == 404


async def test_fault_trickle(client: httpx.AsyncClient) -> None:
    body = "x" * 5000
    await add_fault(client, match="poll", status=200, body=body, trickle_seconds=0.3)
    response = await client.get("/jobs/job_x")
    assert response.status_code == 200 and response.text == body


async def test_clear_faults_and_reset(client: httpx.AsyncClient, service: DemoService) -> None:
    await add_fault(client, match="any", status=500, times=5)
    assert (await client.delete("/admin/faults", headers=ADMIN)).status_code == 200
    await submit(client)
    await add_fault(client, match="any", status=500)
    assert (await client.post("/admin/reset", headers=ADMIN)).status_code == 200
    stats = (await client.get("/admin/stats", headers=ADMIN)).json()
    assert stats == {
        "jobs_created": 0,
        "submit_requests": 0,
        "poll_requests": 0,
        "cancel_requests": 0,
        "callbacks_sent": 0,
        "callbacks_failed": 0,
        "jobs": {},
    }
    assert service.state.faults == []


async def test_admin_key_required(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"X-Admin-Key": "wrong"}):
        for method, path in [
            ("POST", "/admin/token"),
            ("POST", "/admin/faults"),
            ("DELETE", "/admin/faults"),
            ("GET", "/admin/stats"),
            ("POST", "/admin/reset"),
        ]:
            response = await client.request(method, path, json={"token": "x"}, headers=headers)
            assert response.status_code == 403 and response.json() == {"error": "bad admin key"}


async def test_stats_counters(service: DemoService, client: httpx.AsyncClient) -> None:
    job_id = await submit(client, work_polls=3)
    await client.get(f"/jobs/{job_id}")
    await client.get(f"/jobs/{job_id}", headers={"Authorization": "Bearer wrong"})
    await add_fault(client, match="poll", status=500)
    await client.get(f"/jobs/{job_id}")
    await client.post(f"/jobs/{job_id}/cancel")
    await client.post("/jobs", content=b"not json")
    stats = (await client.get("/admin/stats", headers=ADMIN)).json()
    assert stats == {
        "jobs_created": 1,
        "submit_requests": 2,
        "poll_requests": 3,
        "cancel_requests": 1,
        "callbacks_sent": 0,
        "callbacks_failed": 0,
        "jobs": {job_id: {"idempotency_key": None, "polls": 1, "status": "cancelled"}},
    }


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", b'"text"', b'{"work_seconds": -1}', b'{"work_seconds": "3"}', b'{"work_polls": 1.5}'],
)
async def test_bad_submit_body(client: httpx.AsyncClient, service: DemoService, content: bytes) -> None:
    response = await client.post("/jobs", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and isinstance(response.json()["error"], str)
    assert service.state.jobs_created == 0


@pytest.mark.parametrize(
    "fault",
    [
        b"{oops",
        b"[]",
        b'{"match": "everything", "status": 500}',
        b'{"match": "poll"}',
        b'{"match": "poll", "status": "500"}',
        b'{"match": "poll", "status": 500, "times": 0}',
        b'{"match": "poll", "status": 500, "delay_seconds": -1}',
        b'{"match": "poll", "status": 500, "colour": "red"}',
    ],
)
async def test_bad_fault(client: httpx.AsyncClient, service: DemoService, fault: bytes) -> None:
    response = await client.post("/admin/faults", content=fault, headers=ADMIN)
    assert response.status_code == 400 and "error" in response.json()
    assert service.state.faults == []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def run_cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "demo_service",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_cli_serves_and_stops_cleanly_on_sigterm() -> None:
    port = free_port()
    proc = await run_cli("--port", str(port), "--token", "cli-token")
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=10)
        assert line.decode().strip() == f"demo job service listening on http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
            response = await c.post("/jobs", json={}, headers={"Authorization": "Bearer cli-token"})
            assert response.status_code == 202
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    assert b"Traceback" not in stderr


async def test_cli_port_in_use_and_bad_flags() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        proc = await run_cli("--port", str(sock.getsockname()[1]))
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=10)
    assert proc.returncode == 2 and stdout == b""
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in lines[0]

    proc = await run_cli("--port", "not-a-number")
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=10)
    assert proc.returncode == 2 and b"Traceback" not in stderr
