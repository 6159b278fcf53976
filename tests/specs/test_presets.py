"""Conformance: each shipped preset drives a fake of its API shape (real HTTP on loopback) end to end.

The fakes in ``tests.fakes`` follow the public APIs' documented shapes; the presets are only data. Each preset
is taken through success, job failure, cancel, a rate limit and an auth failure on the time-skipping server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment

from jobspec import load_spec, resolve_spec
from longjobs import new_worker
from tests.conftest import register_secret, unique_id
from tests.fakes import RunningFake, running_fake
from workflows import JobRequest, JobState, LongRunningJob

TOKEN = register_secret("preset-token-5d1e")


@dataclass(frozen=True)
class Preset:
    name: str
    token_env: str
    ok_input: Any
    fail_input: Any
    variables: dict[str, str] = field(default_factory=dict)


PRESETS = [
    Preset("ogc-processes", "OGC_API_TOKEN", {"message": "hi"}, {"fail": True}, {"process": "echo"}),
    Preset("google-lro", "GOOGLE_ACCESS_TOKEN", {"x": 1}, {"fail": True},
           {"submit_path": "/v1/projects/p1/locations/l1/jobs"}),
    Preset("replicate", "REPLICATE_API_TOKEN", {"version": "v1", "input": {"prompt": "a cat"}},
           {"version": "v1", "input": {"fail": True}}),
    Preset("openai-batch", "OPENAI_API_KEY",
           {"input_file_id": "file-abc", "endpoint": "/v1/chat/completions", "completion_window": "24h"},
           {"input_file_id": "file-fail", "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
    Preset("ray-jobs", "RAY_API_TOKEN", {"entrypoint": "python -c 'print(1)'"}, {"entrypoint": "bash -c 'exit 1'"}),
]


@pytest.fixture(params=PRESETS, ids=[p.name for p in PRESETS])
async def preset(request: pytest.FixtureRequest) -> Preset:
    value: Preset = request.param
    return value


@pytest.fixture
async def fake(preset: Preset) -> AsyncIterator[RunningFake]:
    async with running_fake(preset.name, token=TOKEN) as running:  # type: ignore[arg-type]
        yield running


@dataclass
class Harness:
    env: WorkflowEnvironment
    preset: Preset
    fake: RunningFake
    task_queue: str
    environ: dict[str, str]

    def request(self, job_input: Any, **options: Any) -> JobRequest:
        spec = resolve_spec(load_spec(self.preset.name), {"base_url": self.fake.url, **self.preset.variables}, {})
        options.setdefault("poll_interval_seconds", 10)
        options.setdefault("poll_mode", "timer")  # time-skipping: waits must be workflow timers
        return JobRequest(api=self.preset.name, spec=spec, input=job_input, publish_job_state=False, **options)

    async def start(self, job_input: Any, **options: Any) -> Any:
        return await self.env.client.start_workflow(
            LongRunningJob.run, self.request(job_input, **options), id=unique_id(self.preset.name),
            task_queue=self.task_queue,
        )


@pytest.fixture
async def harness(
    time_env: WorkflowEnvironment, preset: Preset, fake: RunningFake, http: httpx.AsyncClient, task_queue: str
) -> AsyncIterator[Harness]:
    environ = {preset.token_env: TOKEN}
    async with new_worker(time_env.client, http, task_queue=task_queue, environ=environ):
        yield Harness(time_env, preset, fake, task_queue, environ)


async def _wait_for_state(handle: Any, state: JobState, *, min_polls: int = 0) -> None:
    for _ in range(300):
        status = await handle.query(LongRunningJob.status)
        if status.state is state and status.poll_count >= min_polls:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never reached {state.value}")


def _expected_result(preset: Preset, result: Any) -> None:
    match preset.name:
        case "ogc-processes":
            assert result == {"echo": {"message": "hi"}}
        case "google-lro":
            assert result["output"] == "done" and result["input"] == {"x": 1}
        case "replicate":
            assert result is not None
        case "openai-batch":
            assert isinstance(result, list) and len(result) == 2 and result[0]["custom_id"] == "r1"
        case "ray-jobs":
            assert "hello from the fake ray job" in result


async def test_success(harness: Harness) -> None:
    handle = await harness.start(harness.preset.ok_input)
    result = await handle.result()
    assert result.state is JobState.SUCCEEDED
    _expected_result(harness.preset, result.result)
    assert harness.fake.state.created == 1
    status = await handle.query(LongRunningJob.status)
    assert status.poll_count == harness.fake.state.polls_to_finish


async def test_job_failure(harness: Harness) -> None:
    handle = await harness.start(harness.preset.fail_input)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert isinstance(failure.value.cause, ApplicationError)
    assert failure.value.cause.type == "JobFailed"
    assert "no reason given" not in failure.value.cause.message  # the API's own error is carried


async def test_cancel_cancels_the_external_job(harness: Harness) -> None:
    harness.fake.state.polls_to_finish = 1000
    handle = await harness.start(harness.preset.ok_input, poll_interval_seconds=1)
    await _wait_for_state(handle, JobState.POLLING, min_polls=1)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    assert harness.fake.state.cancels == 1
    (job,) = harness.fake.state.jobs.values()
    assert job.phase in ("cancelled", "cancelling")


async def test_rate_limit_then_success(harness: Harness) -> None:
    harness.fake.state.fail_next("poll", 429, times=2)
    handle = await harness.start(harness.preset.ok_input)
    result = await handle.result()
    assert result.state is JobState.SUCCEEDED
    assert result.total_error_count == 2
    assert harness.fake.state.created == 1


async def test_auth_failure_pauses_and_resumes(harness: Harness) -> None:
    harness.fake.state.token = "rotated"
    handle = await harness.start(harness.preset.ok_input, poll_interval_seconds=1)
    await _wait_for_state(handle, JobState.AUTH_PAUSED)
    status = await handle.query(LongRunningJob.status)
    assert status.last_error is not None and status.last_error.http_status == 401
    harness.environ[harness.preset.token_env] = "rotated"  # the person fixes the credential
    await handle.signal(LongRunningJob.resume)
    result = await handle.result()
    assert result.state is JobState.SUCCEEDED
    assert harness.fake.state.created == 1


# -- shape-specific behaviour ------------------------------------------------------------------------------


@pytest.fixture
async def single(
    time_env: WorkflowEnvironment, http: httpx.AsyncClient, task_queue: str, request: pytest.FixtureRequest
) -> AsyncIterator[Harness]:
    preset = next(p for p in PRESETS if p.name == request.param)
    async with running_fake(preset.name, token=TOKEN) as fake:  # type: ignore[arg-type]
        environ = {preset.token_env: TOKEN}
        async with new_worker(time_env.client, http, task_queue=task_queue, environ=environ):
            yield Harness(time_env, preset, fake, task_queue, environ)


@pytest.mark.parametrize("single", ["ray-jobs"], indirect=True)
async def test_ray_duplicate_submission_id_is_adopted_not_resubmitted(single: Harness, http: httpx.AsyncClient) -> None:
    workflow_id = unique_id("ray")
    # The first submit reached Ray but its answer was lost: the job exists under the id we choose.
    created = await http.post(f"{single.fake.url}/api/jobs/", headers={"Authorization": f"Bearer {TOKEN}"},
                              json={"entrypoint": "echo", "submission_id": f"longjobs-{workflow_id}"})
    assert created.status_code == 200
    handle = await single.env.client.start_workflow(
        LongRunningJob.run, single.request({"entrypoint": "echo"}), id=workflow_id, task_queue=single.task_queue
    )
    result = await handle.result()
    assert result.job_id == f"longjobs-{workflow_id}"
    assert single.fake.state.created == 1
    assert single.fake.state.submits == 2


@pytest.mark.parametrize("single", ["ogc-processes"], indirect=True)
async def test_ogc_relative_location_is_followed(single: Harness) -> None:
    single.fake.state.relative_location = True
    result = await (await single.start({"message": "hi"})).result()
    assert result.result == {"echo": {"message": "hi"}}


@pytest.mark.parametrize("single", ["ogc-processes"], indirect=True)
async def test_ogc_location_on_another_origin_fails_permanently(single: Harness) -> None:
    single.fake.state.foreign_location = "http://127.0.0.2:9/jobs/stolen"
    handle = await single.start({"message": "hi"})
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    assert isinstance(failure.value.cause, ApplicationError)
    assert failure.value.cause.type == "PermanentHttpError"
    assert "refusing to follow" in failure.value.cause.message
    assert single.fake.state.polls == 0  # nothing polled, so no credential went anywhere


@pytest.mark.parametrize("single", ["google-lro"], indirect=True)
async def test_google_operation_names_keep_their_slashes(single: Harness) -> None:
    result = await (await single.start({"x": 2})).result()
    assert result.job_id.startswith("projects/p1/locations/l1/operations/")


def test_every_preset_has_a_description_and_base_url_variable() -> None:
    from jobspec import list_presets

    for name in list_presets():
        spec = load_spec(name)
        assert len(spec.description) > 40, name
        assert "base_url" in spec.variables, name
