"""``python worker.py --metrics-port N``: the endpoint answers while the worker runs; SIGTERM still exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from tests.metrics._scrape import scrape_until, value

ROOT = Path(__file__).resolve().parents[2]


def _environ(dev_env: WorkflowEnvironment) -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": dev_env.client.namespace,
        "PYTHONUNBUFFERED": "1",
    }


async def test_worker_serves_metrics_and_exits_0_on_sigterm(
    dev_env: WorkflowEnvironment, http: httpx.AsyncClient, task_queue: str, metrics_port: int, tmp_path: Path
) -> None:
    log_path = tmp_path / "worker.log"
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "worker.py", "--task-queue", task_queue, "--metrics-port", str(metrics_port),
            cwd=ROOT, env=_environ(dev_env), stdout=log, stderr=log,
        )
    try:
        # The SDK's own metrics, from the worker's client and pollers on this task queue.
        samples = await scrape_until(
            http, metrics_port,
            lambda s: value(s, "temporal_num_pollers", task_queue=task_queue) is not None
            and value(s, "temporal_request_total") is not None,
            "the worker's pollers",
        )
        assert all(s.labels.get("service_name") == "temporal-core-sdk" for s in samples)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
    output = log_path.read_text()
    assert code == 0, output[-2000:]
    assert f"metrics at http://127.0.0.1:{metrics_port}/metrics" in output


async def test_worker_with_its_metrics_port_taken_exits_2_in_one_line(
    dev_env: WorkflowEnvironment, task_queue: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "worker.py", "--task-queue", task_queue, "--metrics-port", str(port),
            cwd=ROOT, env=_environ(dev_env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert err.decode().strip().startswith(f"worker.py: error: cannot serve metrics on 127.0.0.1:{port}: ")
    assert len(err.decode().strip().splitlines()) == 1
