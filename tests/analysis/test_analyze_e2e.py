"""The issue's "done when", on a real dev server with ``python worker.py`` as a user runs it.

A demo job started with ``analyze`` ends with a validated analysis when the worker's environment names a model
endpoint, and succeeds unchanged (saying how to configure one) when it does not.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from demo_service import DemoService
from jobspec import AnalyzeSpec
from tests.analysis.conftest import LLM_KEY, LLM_MODEL
from tests.analysis.fake_llm import VALID_ANALYSIS, FakeLLM
from tests.conftest import decoded_json_text, demo_request, unique_id
from tests.e2e.conftest import Cli
from workflows import JobResult, JobState, LongRunningJob

INPUT = {"work_polls": 1, "scene": "e2e-lighthouse"}


async def _run_with_worker(
    cli: Cli, dev_env: WorkflowEnvironment, demo: DemoService, env: dict[str, str]
) -> tuple[JobResult, str]:
    process = await cli.start_worker(env=env)
    try:
        request = demo_request(demo, time_skipping=False, input=INPUT, analyze=AnalyzeSpec(),
                               poll_interval_seconds=0.2)
        handle = await dev_env.client.start_workflow(
            LongRunningJob.run, request, id=unique_id("e2e-analyze"), task_queue=cli.task_queue
        )
        try:
            result = await asyncio.wait_for(handle.result(), 60)
        except BaseException:
            await handle.terminate(reason="test over")
            raise
        history = decoded_json_text(json.dumps((await handle.fetch_history()).to_json_dict()))
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
    assert code == 0, cli.worker_log.read_text()[-2000:]
    return result, history


def _without_llm(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith("LLM_")}


async def test_worker_with_model_endpoint_analyses_the_demo_job(
    cli: Cli, dev_env: WorkflowEnvironment, demo: DemoService, llm: FakeLLM, llm_key_file: Path
) -> None:
    env = {**_without_llm(cli.env), "LLM_BASE_URL": llm.base_url, "LLM_MODEL": LLM_MODEL,
           "LLM_API_KEY_FILE": str(llm_key_file)}
    result, history = await _run_with_worker(cli, dev_env, demo, env)

    assert result.state is JobState.SUCCEEDED
    assert result.result == {"output": "processed 1 items", "input": {"scene": "e2e-lighthouse"}}
    assert result.analysis == VALID_ANALYSIS
    assert result.analysis_error is None
    [sent] = llm.requests
    assert sent.body["model"] == LLM_MODEL
    assert sent.authorization == f"Bearer {LLM_KEY}"
    assert "e2e-lighthouse" in sent.prompt
    assert "e2e-lighthouse" in history and LLM_KEY not in history


async def test_worker_without_model_endpoint_changes_nothing(
    cli: Cli, dev_env: WorkflowEnvironment, demo: DemoService, llm: FakeLLM
) -> None:
    result, _ = await _run_with_worker(cli, dev_env, demo, _without_llm(cli.env))

    assert result.state is JobState.SUCCEEDED
    assert result.result == {"output": "processed 1 items", "input": {"scene": "e2e-lighthouse"}}
    assert result.analysis is None
    assert result.analysis_error is not None and "LLM_BASE_URL" in result.analysis_error
    assert result.total_error_count == 0
    assert llm.requests == []
