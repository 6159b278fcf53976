"""The analyze step end to end on the time-skipping server: the demo job service, a real worker, and the fake
OpenAI-compatible endpoint (real HTTP on loopback) scripted per test.

Each test runs one demo job with ``analyze`` set and checks both sides: what the job returned, and what the
model endpoint was sent (prompt, model, key, response format, repair message).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from demo_service import DemoService
from jobspec import AnalyzeSpec
from tests.analysis.conftest import LLM_KEY, LLM_MODEL
from tests.analysis.fake_llm import VALID_ANALYSIS, FakeLLM, Reply, completion, openai_error
from tests.conftest import decoded_json_text, demo_spec, start_worker, unique_id
from tests.workflows._support import result_of, start, status_of, timers, track, wait_for_state
from workflows import JobRequest, JobResult, JobState, JobStatus, LongRunningJob

INPUT = {"work_polls": 1, "scene": "harbour-7f"}
# What the demo service returns for INPUT (its knobs, like work_polls, are not part of the job's own input).
RESULT = {"output": "processed 1 items", "input": {"scene": "harbour-7f"}}
QUICK = 0.2  # poll interval for tests that watch a state in real time


async def run_job(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    environ: dict[str, str], **fields: Any,
) -> tuple[WorkflowHandle[Any, JobResult], JobResult, JobStatus]:
    """One demo job with the analyze step (unless ``analyze`` is given), run to its end; its last status."""
    fields.setdefault("analyze", AnalyzeSpec())
    fields.setdefault("input", INPUT)
    async with start_worker(time_env.client, http, task_queue, environ):
        handle = await start(time_env.client, demo, task_queue, **fields)
        result = await result_of(handle)
        status = await status_of(handle)  # a query needs the worker
    return handle, result, status




# -- the happy path ---------------------------------------------------------------------------------------------


async def test_valid_reply_gives_a_validated_analysis(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    llm: FakeLLM, llm_environ: dict[str, str],
) -> None:
    _, result, _ = await run_job(time_env, demo, http, task_queue, llm_environ)

    assert result.state is JobState.SUCCEEDED
    assert result.result == RESULT
    assert result.analysis == VALID_ANALYSIS
    assert result.analysis_error is None
    assert result.analysis_trimmed_chars == 0
    assert result.total_error_count == 0

    [request] = llm.requests
    assert request.path == "/v1/chat/completions"
    assert request.body["model"] == LLM_MODEL
    assert request.authorization == f"Bearer {LLM_KEY}"
    # The prompt carries the job's result and its input.
    assert json.dumps(RESULT, indent=1) in request.prompt
    assert json.dumps(INPUT) in request.prompt
    assert [m["role"] for m in request.messages] == ["system", "user"]
    # Structured output, strict, with a schema the reply is validated against.
    response_format = request.body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["strict"] is True
    schema = response_format["json_schema"]["schema"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"]) == {"summary", "findings", "recommendations"}


async def test_reply_in_a_code_fence_is_accepted(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    llm: FakeLLM, llm_environ: dict[str, str],
) -> None:
    llm.script(Reply.content("```json\n" + json.dumps(VALID_ANALYSIS, indent=2) + "\n```"))
    _, result, _ = await run_job(time_env, demo, http, task_queue, llm_environ)
    assert result.analysis == VALID_ANALYSIS
    assert len(llm.requests) == 1  # no repair needed


async def test_spec_level_analyze_and_model_override(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    llm: FakeLLM, llm_environ: dict[str, str],
) -> None:
    """``ApiSpec.analyze`` applies to every job of the API; its ``model`` wins over the worker's LLM_MODEL."""
    spec = demo_spec(demo).model_copy(
        update={"analyze": AnalyzeSpec(prompt="Spec prompt. Result: {result}", model="spec-model")}
    )
    request = JobRequest(api="demo", spec=spec, input=INPUT, publish_job_state=False, poll_mode="timer")
    async with start_worker(time_env.client, http, task_queue, llm_environ):
        handle = track(await time_env.client.start_workflow(
            LongRunningJob.run, request, id=unique_id("spec-analyze"), task_queue=task_queue))
        result = await result_of(handle)
    assert result.analysis == VALID_ANALYSIS
    [sent] = llm.requests
    assert sent.body["model"] == "spec-model"
    assert sent.prompt.startswith("Spec prompt. Result: ")
    assert json.dumps(RESULT, indent=1) in sent.prompt


async def test_job_level_analyze_wins_over_the_spec(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    llm: FakeLLM, llm_environ: dict[str, str],
) -> None:
    spec = demo_spec(demo).model_copy(update={"analyze": AnalyzeSpec(prompt="spec {result}", model="spec-model")})
    request = JobRequest(api="demo", spec=spec, input=INPUT, publish_job_state=False, poll_mode="timer",
                         analyze=AnalyzeSpec(prompt="job {result}"))
    async with start_worker(time_env.client, http, task_queue, llm_environ):
        handle = track(await time_env.client.start_workflow(
            LongRunningJob.run, request, id=unique_id("job-analyze"), task_queue=task_queue))
        result = await result_of(handle)
    assert result.analysis == VALID_ANALYSIS
    [sent] = llm.requests
    assert sent.prompt.startswith("job ")
    assert sent.body["model"] == LLM_MODEL


# -- invalid replies: one repair request ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "complaint"),
    [
        ("Sure! The job went fine.", "json"),  # not JSON at all
        (json.dumps({"summary": "ok", "findings": ["a"]}), "recommendations"),  # a required field missing
        (json.dumps({**VALID_ANALYSIS, "summary": ""}), "summary"),  # an empty summary
    ],
    ids=["prose", "missing-field", "empty-summary"],
)
async def test_invalid_then_repaired_reply(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    llm: FakeLLM, llm_environ: dict[str, str], first: str, complaint: str,
) -> None:
    llm.script(Reply.content(first))
    _, result, _ = await run_job(time_env, demo, http, task_queue, llm_environ)

    assert result.state is JobState.SUCCEEDED
    assert result.analysis == VALID_ANALYSIS
    assert result.analysis_error is None
    assert result.total_error_count == 0  # repaired inside the one call: not an error of the job
    first_request, repair = llm.requests
    # The repair request is the same conversation plus the bad reply and what was wrong with it.
    assert repair.messages[:2] == first_request.messages
    assert repair.messages[2] == {"role": "assistant", "content": first}
    assert repair.messages[3]["role"] == "user"
    assert "did not validate" in repair.messages[3]["content"]
    assert complaint in repair.messages[3]["content"].lower()
    assert repair.body["model"] == first_request.body["model"] == LLM_MODEL
    assert repair.authorization == f"Bearer {LLM_KEY}"


async def test_invalid_twice_job_still_succeeds_with_analysis_error(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    llm: FakeLLM, llm_environ: dict[str, str],
) -> None:
    llm.script(Reply.content("not json"), Reply.content(json.dumps({"summary": "still missing lists"})))
    _, result, _ = await run_job(time_env, demo, http, task_queue, llm_environ)

    assert result.state is JobState.SUCCEEDED
    assert result.result == RESULT
    assert result.analysis is None
    assert result.analysis_error is not None
    assert "did not validate" in result.analysis_error
    assert "findings" in result.analysis_error  # says what was wrong with the last reply
    assert len(llm.requests) == 2  # ONE repair request, and no retry of the whole call


# -- classification: rate limit, auth, permanent failures ------------------------------------------------------


async def test_rate_limited_then_success_backs_off_as_told(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    llm: FakeLLM, llm_environ: dict[str, str],
) -> None:
    llm.script(Reply(429, openai_error("Rate limit reached for requests", type="requests",
                                       code="rate_limit_exceeded"), {"Retry-After": "7"}))
    handle, result, status = await run_job(time_env, demo, http, task_queue, llm_environ, initial_backoff_seconds=2)

    assert result.state is JobState.SUCCEEDED
    assert result.analysis == VALID_ANALYSIS
    assert result.analysis_error is None
    assert len(llm.requests) == 2
    assert result.total_error_count == 1
    # The workflow waited on a durable timer, as long as the server asked (longer than its own backoff).
    assert 7.0 in await timers(handle)
    assert status.last_error is not None
    assert status.last_error.step == "analyze" and status.last_error.http_status == 429


async def test_rate_limited_without_retry_after_uses_the_jobs_backoff(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    llm: FakeLLM, llm_environ: dict[str, str],
) -> None:
    llm.script(Reply(429, openai_error("slow down")), Reply(429, openai_error("slow down")))
    handle, result, _ = await run_job(time_env, demo, http, task_queue, llm_environ, initial_backoff_seconds=3)
    assert result.analysis == VALID_ANALYSIS
    waits = await timers(handle)
    assert waits[-2:] == [3.0, 6.0]  # initial, then doubled: the same backoff as polling


async def test_auth_failure_pauses_until_the_key_is_fixed_and_resumed(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    llm: FakeLLM, llm_environ: dict[str, str], llm_key_file: Path,
) -> None:
    llm.api_key = "sk-the-right-key-93a1"  # the key file holds LLM_KEY: every call is refused with a 401
    async with start_worker(time_env.client, http, task_queue, llm_environ):
        handle = await start(time_env.client, demo, task_queue, input=INPUT, analyze=AnalyzeSpec(),
                             poll_interval_seconds=QUICK)
        paused = await wait_for_state(handle, JobState.AUTH_PAUSED)
        assert paused.last_error is not None
        assert paused.last_error.step == "analyze"
        assert paused.last_error.error_class == "auth_required" and paused.last_error.http_status == 401
        assert "Incorrect API key" in paused.last_error.message
        assert LLM_KEY not in paused.last_error.message  # the server echoed the key; it was scrubbed
        assert len(llm.requests) == 1

        await asyncio.sleep(0.5)  # paused means no calls
        assert len(llm.requests) == 1
        assert (await status_of(handle)).state is JobState.AUTH_PAUSED

        llm_key_file.write_text("sk-the-right-key-93a1\n")
        await handle.signal(LongRunningJob.resume, {"note": "rotated the model key"})
        result = await result_of(handle)
        status = await status_of(handle)

    assert result.state is JobState.SUCCEEDED
    assert result.result == RESULT
    assert result.analysis == VALID_ANALYSIS
    assert result.analysis_error is None
    assert len(llm.requests) == 2
    assert llm.requests[-1].authorization == "Bearer sk-the-right-key-93a1"
    assert status.resume_note == "rotated the model key"
    assert status.paused_since is None
    assert demo.state.jobs_created == 1  # the job itself was not touched again


@pytest.mark.parametrize(
    ("replies", "options", "calls", "expected"),
    [
        pytest.param(
            [Reply(400, openai_error("Invalid value for 'temperature': must be between 0 and 1.",
                                     param="temperature"))],
            {}, 1, ["PermanentHttpError", "400", "temperature"], id="400-not-about-response-format",
        ),
        pytest.param(
            [Reply(404, openai_error("The model `fake-model-from-env` does not exist", code="model_not_found"))],
            {}, 1, ["404", "does not exist"], id="404-unknown-model",
        ),
        pytest.param(
            [Reply(500, openai_error("The server had an error", type="server_error"))] * 3,
            {"max_consecutive_errors": 3}, 3, ["ErrorLimitExceeded", "3 consecutive errors", "500"],
            id="500s-until-the-error-limit",
        ),
        pytest.param(
            [Reply(200, {"object": "chat.completion", "choices": []})] * 2,
            {"max_consecutive_errors": 2}, 2, ["ErrorLimitExceeded", "choices"], id="answers-without-choices",
        ),
    ],
)
async def test_permanent_failure_job_still_succeeds(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    llm: FakeLLM, llm_environ: dict[str, str],
    replies: list[Reply], options: dict[str, Any], calls: int, expected: list[str],
) -> None:
    llm.script(*replies)
    _, result, _ = await run_job(time_env, demo, http, task_queue, llm_environ, **options)

    assert result.state is JobState.SUCCEEDED
    assert result.result == RESULT
    assert result.analysis is None
    assert result.analysis_error is not None
    for word in expected:
        assert word in result.analysis_error
    assert "analyze" in result.analysis_error
    assert len(llm.requests) == calls
    assert demo.state.jobs_created == 1


async def test_response_format_refused_retries_without_it(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    llm: FakeLLM, llm_environ: dict[str, str],
) -> None:
    llm.script(Reply(400, openai_error(
        "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.",
        param="response_format",
    )))
    _, result, _ = await run_job(time_env, demo, http, task_queue, llm_environ)

    assert result.state is JobState.SUCCEEDED
    assert result.analysis == VALID_ANALYSIS
    assert result.analysis_error is None
    assert result.total_error_count == 0
    with_schema, without = llm.requests
    assert "response_format" in with_schema.body
    assert "response_format" not in without.body
    assert without.messages == with_schema.messages  # the prompt itself asks for the JSON object


async def test_response_format_refused_then_invalid_reply_is_repaired_without_it(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    llm: FakeLLM, llm_environ: dict[str, str],
) -> None:
    llm.script(
        Reply(400, openai_error("response_format json_schema is not supported")),
        Reply.content("Here is my analysis: all good."),
    )
    _, result, _ = await run_job(time_env, demo, http, task_queue, llm_environ)
    assert result.analysis == VALID_ANALYSIS
    assert [("response_format" in r.body) for r in llm.requests] == [True, False, False]
    assert len(llm.requests[-1].messages) == 4


# -- the trim --------------------------------------------------------------------------------------------------


async def test_long_result_is_trimmed_and_the_trim_recorded(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    llm: FakeLLM, llm_environ: dict[str, str],
) -> None:
    long_input = {"work_polls": 1, "rows": [f"row-{i:04d}" for i in range(60)]}
    _, result, _ = await run_job(time_env, demo, http, task_queue, llm_environ, input=long_input,
                              analyze=AnalyzeSpec(max_result_chars=100))

    assert result.state is JobState.SUCCEEDED
    assert result.analysis == VALID_ANALYSIS
    full = json.dumps(result.result, indent=1)
    assert len(full) > 100
    assert result.analysis_trimmed_chars == len(full) - 100 > 0
    [sent] = llm.requests
    assert full[:100] in sent.prompt
    assert full[100:] not in sent.prompt
    assert f"[… {len(full) - 100} more characters trimmed]" in sent.prompt
    # The job's own result is never trimmed: only what the model reads.
    assert result.result["input"]["rows"] == long_input["rows"]


@pytest.mark.parametrize("extra", [0, 1], ids=["exactly-the-budget", "one-over"])
async def test_trim_boundary(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    llm: FakeLLM, llm_environ: dict[str, str], extra: int,
) -> None:
    """A result of exactly ``max_result_chars`` is sent whole; one character more is trimmed, and said so."""
    bare = len(json.dumps({"output": "processed 1 items", "input": {"scene": ""}}, indent=1))
    scene = "s" * (100 - bare + extra)
    _, result, _ = await run_job(time_env, demo, http, task_queue, llm_environ,
                                 input={"work_polls": 1, "scene": scene}, analyze=AnalyzeSpec(max_result_chars=100))
    assert len(json.dumps(result.result, indent=1)) == 100 + extra
    assert result.analysis_trimmed_chars == extra
    assert ("more characters trimmed" in llm.requests[0].prompt) is bool(extra)
    assert result.analysis == VALID_ANALYSIS


# -- not configured --------------------------------------------------------------------------------------------


async def test_no_llm_base_url_nothing_fails(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    llm: FakeLLM, worker_environ: dict[str, str],
) -> None:
    _, result, status = await run_job(time_env, demo, http, task_queue, worker_environ)

    assert result.state is JobState.SUCCEEDED
    assert result.result == RESULT
    assert result.analysis is None
    assert result.analysis_error is not None and "LLM_BASE_URL" in result.analysis_error
    assert result.analysis_trimmed_chars == 0
    assert result.total_error_count == 0
    assert llm.requests == []
    assert status.state is JobState.SUCCEEDED


async def test_without_analyze_nothing_changes(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    llm: FakeLLM, llm_environ: dict[str, str],
) -> None:
    """A model endpoint on the worker does nothing for jobs that do not ask for analysis."""
    _, result, _ = await run_job(time_env, demo, http, task_queue, llm_environ, analyze=None)
    assert result.state is JobState.SUCCEEDED
    assert result.result == RESULT
    assert (result.analysis, result.analysis_error, result.analysis_trimmed_chars) == (None, None, 0)
    assert llm.requests == []


# -- the key never reaches history -----------------------------------------------------------------------------


async def test_key_never_in_history(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    llm: FakeLLM, llm_environ: dict[str, str],
) -> None:
    # A careless server echoes the key in an error, and a model repeats it in its reply.
    echoed = {**VALID_ANALYSIS, "summary": f"Called with key {LLM_KEY}."}
    llm.script(
        Reply(503, openai_error(f"upstream overloaded (key {LLM_KEY})", type="server_error")),
        Reply(200, completion(json.dumps(echoed))),
    )
    handle, result, _ = await run_job(time_env, demo, http, task_queue, llm_environ)

    assert result.analysis is not None
    assert LLM_KEY not in result.analysis["summary"] and "***" in result.analysis["summary"]
    assert all(r.authorization == f"Bearer {LLM_KEY}" for r in llm.requests)  # it was used...
    history = decoded_json_text(json.dumps((await handle.fetch_history()).to_json_dict()))
    assert "harbour-7f" in history  # (the decoding works: the job's input is found)
    assert LLM_KEY not in history  # ...and never recorded


# -- bugs ------------------------------------------------------------------------------------------------------


async def test_analysis_backoff_past_the_job_deadline_keeps_the_result(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    llm: FakeLLM, llm_environ: dict[str, str],
) -> None:
    # The job itself finishes at once; the model endpoint then asks for an hour's patience, twice.
    llm.script(*[Reply(429, openai_error("Rate limit reached"), {"Retry-After": "3600"})] * 2)
    try:
        _, result, _ = await run_job(time_env, demo, http, task_queue, llm_environ, job_timeout="10m")
    except WorkflowFailureError as err:
        assert isinstance(err.cause, ApplicationError) and err.cause.type == "PollTimeout", err.cause
        assert demo.state.cancel_requests == 1  # it even tried to cancel a job that had succeeded
        raise
    assert result.state is JobState.SUCCEEDED
    assert result.result == RESULT
    assert result.analysis_error is not None


async def test_unresumed_analysis_auth_pause_keeps_the_result(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    llm: FakeLLM, llm_environ: dict[str, str],
) -> None:
    llm.api_key = "sk-nobody-has-this-one"  # every call is refused: the analysis can never succeed
    try:
        _, result, _ = await run_job(time_env, demo, http, task_queue, llm_environ, auth_pause_timeout="1h")
    except WorkflowFailureError as err:
        assert isinstance(err.cause, ApplicationError) and err.cause.type == "AuthPauseTimeout", err.cause
        raise
    assert result.state is JobState.SUCCEEDED
    assert result.result == RESULT
    assert result.analysis_error is not None and "401" in result.analysis_error


async def test_refusal_is_reported_not_retried(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    llm: FakeLLM, llm_environ: dict[str, str],
) -> None:
    refusal = completion("")
    refusal["choices"][0]["message"] = {"role": "assistant", "content": None,
                                        "refusal": "I'm sorry, I cannot assist with that request."}
    llm.script(*[Reply(200, refusal)] * 5)
    _, result, _ = await run_job(time_env, demo, http, task_queue, llm_environ)
    assert result.state is JobState.SUCCEEDED  # (holds today)
    assert result.analysis is None and result.analysis_error is not None  # (holds today)
    assert "cannot assist" in result.analysis_error, result.analysis_error
    assert len(llm.requests) <= 2, len(llm.requests)


async def test_response_format_refused_with_422_retries_without_it(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    llm: FakeLLM, llm_environ: dict[str, str],
) -> None:
    llm.script(Reply(422, "Failed to deserialize the JSON body into the target type: response_format: "
                          "response_format.type `json_schema` is unavailable now at line 1 column 1200"))
    _, result, _ = await run_job(time_env, demo, http, task_queue, llm_environ)
    assert result.state is JobState.SUCCEEDED  # (holds today)
    assert result.analysis == VALID_ANALYSIS, result.analysis_error
    assert [("response_format" in r.body) for r in llm.requests] == [True, False]
