"""``analyze_result`` and its helpers called directly (no Temporal): one activity call against the fake endpoint."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest

from activities import AnalyzeInput, JobApiActivities, OutcomeClass
from activities._analysis import Analysis, build_prompt
from jobspec import AnalyzeSpec
from tests.analysis.conftest import LLM_KEY
from tests.analysis.fake_llm import VALID_ANALYSIS, FakeLLM, Reply, openai_error

JOB_INPUT = {"scene": "harbour-7f"}
RESULT = {"output": "processed 1 items", "input": JOB_INPUT}


async def analyze(http: httpx.AsyncClient, environ: dict[str, str], **spec: Any) -> Any:
    activities = JobApiActivities(http, environ=environ)
    return await activities.analyze_result(AnalyzeInput(spec=AnalyzeSpec(**spec), job_input=JOB_INPUT, result=RESULT))


async def test_ok_outcome_carries_analysis_trim_and_repair_flag(
    http: httpx.AsyncClient, llm: FakeLLM, llm_environ: dict[str, str]
) -> None:
    outcome = await analyze(http, llm_environ)
    assert outcome.outcome is OutcomeClass.OK
    assert outcome.result == {"analysis": VALID_ANALYSIS, "trimmed_chars": 0, "repaired": False}
    [sent] = llm.requests
    assert sent.body["temperature"] == 0
    assert sent.authorization == f"Bearer {LLM_KEY}"

    llm.script(Reply.content("{}"))
    repaired = await analyze(http, llm_environ)
    assert repaired.result["repaired"] is True


async def test_json_schema_can_be_switched_off(
    http: httpx.AsyncClient, llm: FakeLLM, llm_environ: dict[str, str]
) -> None:
    outcome = await analyze(http, {**llm_environ, "LLM_JSON_SCHEMA": "0"})
    assert outcome.outcome is OutcomeClass.OK
    assert "response_format" not in llm.requests[0].body


async def test_key_from_the_environment_or_none_at_all(
    http: httpx.AsyncClient, llm: FakeLLM, llm_environ: dict[str, str]
) -> None:
    without_file = {k: v for k, v in llm_environ.items() if k != "LLM_API_KEY_FILE"}
    assert (await analyze(http, {**without_file, "LLM_API_KEY": "sk-env-key"})).outcome is OutcomeClass.OK
    assert llm.requests[-1].authorization == "Bearer sk-env-key"
    # A local model server without auth: no key anywhere is not an error, the request just carries none.
    assert (await analyze(http, without_file)).outcome is OutcomeClass.OK
    assert llm.requests[-1].authorization is None


async def test_model_default_and_base_url_with_trailing_slash(
    http: httpx.AsyncClient, llm: FakeLLM, llm_environ: dict[str, str]
) -> None:
    environ = {k: v for k, v in llm_environ.items() if k != "LLM_MODEL"}
    environ["LLM_BASE_URL"] = llm.base_url + "/"
    assert (await analyze(http, environ)).outcome is OutcomeClass.OK
    [sent] = llm.requests
    assert sent.path == "/v1/chat/completions"
    assert isinstance(sent.body["model"], str) and sent.body["model"]


async def test_unreachable_endpoint_is_transient(http: httpx.AsyncClient, llm_environ: dict[str, str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    outcome = await analyze(http, {**llm_environ, "LLM_BASE_URL": f"http://127.0.0.1:{port}/v1"})
    assert outcome.outcome is OutcomeClass.TRANSIENT
    assert "connect" in outcome.message


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(429, openai_error("Rate limit"), {"Retry-After": "7"}), OutcomeClass.RATE_LIMIT),
        (Reply(401, openai_error("Incorrect API key provided")), OutcomeClass.AUTH_REQUIRED),
        (Reply(403, openai_error("Country not supported")), OutcomeClass.AUTH_REQUIRED),
        (Reply(500, openai_error("The server had an error")), OutcomeClass.SERVER_ERROR),
        (Reply(400, openai_error("Invalid 'messages'")), OutcomeClass.PERMANENT),
        (Reply(200, "<html>gateway</html>", content_type="text/html"), OutcomeClass.TRANSIENT),
    ],
    ids=["429", "401", "403", "500", "400", "not-json"],
)
async def test_http_outcomes_are_classified_like_any_call(
    http: httpx.AsyncClient, llm: FakeLLM, llm_environ: dict[str, str], reply: Reply, expected: OutcomeClass
) -> None:
    llm.script(reply)
    outcome = await analyze(http, llm_environ)
    assert outcome.outcome is expected
    assert len(llm.requests) == 1
    if expected is OutcomeClass.RATE_LIMIT:
        assert outcome.retry_after_seconds == 7


def test_prompt_fills_input_and_result() -> None:
    prompt, trimmed = build_prompt(AnalyzeSpec(prompt="IN={input} OUT={result}"), JOB_INPUT, RESULT)
    assert prompt == f"IN={json.dumps(JOB_INPUT)} OUT={json.dumps(RESULT, indent=1)}"
    assert trimmed == 0
    text_prompt, _ = build_prompt(AnalyzeSpec(prompt="{result}"), None, "plain text result")
    assert text_prompt == "plain text result"  # a text result is sent as it is, not as a JSON string


def test_analysis_model_rejects_an_empty_summary() -> None:
    Analysis.model_validate(VALID_ANALYSIS)
    with pytest.raises(ValueError):
        Analysis.model_validate({"summary": "", "findings": [], "recommendations": []})


def test_placeholder_text_inside_the_input_is_left_alone() -> None:
    job_input = {"note": "the template was {result} {result} {result}"}
    result = "R" * 150
    prompt, trimmed = build_prompt(AnalyzeSpec(max_result_chars=100), job_input, result)
    assert trimmed == 50
    assert json.dumps(job_input) in prompt
    assert prompt.count("R" * 100) == 1
