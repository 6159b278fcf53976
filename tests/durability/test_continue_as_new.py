"""Continue-as-new: every run of a job of any length stays short, and carries the whole job, signals included.

Two servers (the 20,000-poll job is in test_long_job.py):

* the time-skipping server, for the job's own event limit: a one-minute poll interval costs no real time there;
* a dev server of this module's own, for the hand-overs: it suggests continue-as-new after ``SUGGEST_AFTER``
  events, so a run hands over every few polls. Its rule is exact (a workflow task is suggested when its
  started event's id reaches the limit), and a poll is a local activity inside its workflow task, so a test
  that holds a poll on the demo service (a delayed fault) knows which workflow task it is in, and can refuse
  the hand-over poll (401, 429).

A run decides to hand over after a poll, then hands over in the task of a short timer's firing (see
``_continue_as_new_if_due``). Tests that must act inside that task hold it with ``HandOverGate``, a worker
interceptor that blocks the live hand-over until the test lets it go.

Signals around a hand-over take one of three ways: during the hand-over task, the server refuses the
continue-as-new (unhandled command) and the task runs again with them; just after it, they reach the new run
before its first task (``WorkflowExecutionSignaled`` right after ``WorkflowExecutionStarted``); or they reach a
run that is paused for credentials, which hands over only once resumed.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    UnsandboxedWorkflowRunner,
    Worker,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from demo_service import DemoService
from longjobs import new_worker
from tests.conftest import DEMO_TOKEN, demo_request, find_binary, start_worker, unique_id
from tests.durability._runs import Run, runs_of, terminated_unless_done
from workflows import SEARCH_ATTRIBUTE_KEYS, JobResult, JobState, JobStatus, LongRunningJob
from workflows._job_workflow import HAND_OVER_BARRIER

# The hand-over server suggests continue-as-new this early: a run lasts about five polls.
SUGGEST_AFTER = 40
# Events from one poll's workflow task started to the next one's: completed, marker, timer started and fired,
# task scheduled, task started.
EVENTS_PER_POLL = 6
HOLD_SECONDS = 1.0  # how long a held poll waits on the demo service: time for the test to act meanwhile
QUICK = 0.2  # poll interval of the hand-over tests
GUARD_SECONDS = 60  # a bound on each wait of the hand-over tests (not a timing assertion)
ADMIN_HEADERS = {"X-Admin-Key": "test-admin"}
RUNNING = json.dumps({"status": "running", "progress": 50})  # a poll answer that does not end the job
ROTATED = "rotated-token-c4a7"

class CallbacksLost(AssertionError):
    """Callback signals that Temporal delivered, but the job did not count."""


async def test_a_run_hands_over_at_its_own_event_limit_when_the_server_does_not_suggest_it(
    time_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    """``history_events_per_run`` below the server's suggestion (4,096 here): the job's own limit hands over."""
    client = time_env.client
    limit = 500
    request = demo_request(demo, input={"work_polls": 300}, poll_interval_seconds=60, history_events_per_run=limit)
    async with start_worker(client, http, task_queue, worker_environ):
        handle = await client.start_workflow(
            LongRunningJob.run, request, id=unique_id("can-own"), task_queue=task_queue
        )
        async with terminated_unless_done(handle):
            result: JobResult = await asyncio.wait_for(handle.result(), GUARD_SECONDS)

    assert result.state is JobState.SUCCEEDED and result.poll_count >= 300
    runs = await runs_of(client, handle.id, handle.first_execution_run_id)
    lengths = [len(run.events) for run in runs]
    # 300 polls at 6 events are about 1,800 events: four runs, each handed over within a poll of the limit.
    assert len(runs) >= 4 and result.runs == len(runs), lengths
    assert all(limit < length <= limit + 2 * EVENTS_PER_POLL + 10 for length in lengths[:-1]), lengths
    assert all(run.continued_as_new for run in runs[:-1])
    suggested = [
        e for run in runs for e in run.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
        and e.workflow_task_started_event_attributes.suggest_continue_as_new
    ]
    assert not suggested, "the server suggested a hand-over: this test no longer shows the job's own limit"
    assert demo.state.jobs_created == 1 and demo.state.submit_requests == 1


# -- hand-overs every few polls, on a dev server of this module's own ---------------------------------------


@pytest.fixture(scope="module")
async def can_env() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server that suggests continue-as-new after ``SUGGEST_AFTER`` events (and fires timers on time)."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=list(SEARCH_ATTRIBUTE_KEYS),
        ui=False,
        dev_server_extra_args=[
            "--dynamic-config-value", f"limit.historyCount.suggestContinueAsNew={SUGGEST_AFTER}",
            "--dynamic-config-value", 'history.timerProcessorMaxTimeShift="10ms"',
            "--log-level", "error",
        ],
    )
    async with env:
        yield env


async def start_job(client: Client, demo: DemoService, task_queue: str, **fields: Any) -> WorkflowHandle[Any, Any]:
    fields.setdefault("input", {"work_polls": 12})
    fields.setdefault("poll_interval_seconds", QUICK)
    fields.setdefault("poll_mode", "timer")  # a poll is a local activity inside a known workflow task (above)
    request = demo_request(demo, time_skipping=False, **fields)
    return await client.start_workflow(LongRunningJob.run, request, id=unique_id("can"), task_queue=task_queue)


async def inject(http: httpx.AsyncClient, demo: DemoService, **fault: Any) -> None:
    response = await http.post(f"{demo.url}/admin/faults", json=fault, headers=ADMIN_HEADERS)
    assert response.status_code == 200, response.text


async def status_of(handle: WorkflowHandle[Any, Any]) -> JobStatus:
    status: JobStatus = await handle.query(LongRunningJob.status)
    return status


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(GUARD_SECONDS * 100):
        if condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"never happened: {what}")


async def wait_for(handle: WorkflowHandle[Any, Any], predicate: Callable[[JobStatus], bool], what: str) -> JobStatus:
    last: JobStatus | None = None
    for _ in range(GUARD_SECONDS * 20):
        with contextlib.suppress(RPCError):
            last = await status_of(handle)
            if predicate(last):
                return last
        await asyncio.sleep(0.05)
    pytest.fail(f"the job never got to {what}; last status: {last}")


async def current_run(client: Client, workflow_id: str) -> tuple[str, list[HistoryEvent]]:
    run_id = (await client.get_workflow_handle(workflow_id).describe()).run_id
    assert run_id is not None
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    return run_id, [e async for e in handle.fetch_history_events()]


async def hold_poll(
    client: Client, http: httpx.AsyncClient, demo: DemoService, workflow_id: str
) -> tuple[str, HistoryEvent]:
    """Hold the job's next poll ``HOLD_SECONDS`` on the demo service (it then answers "running").

    Returns, while the poll is still held, its run and the started event of the workflow task it runs in: a
    local activity runs inside its task, so that event is the run's last one.
    """
    await inject(http, demo, match="poll", status=200, body=RUNNING, delay_seconds=HOLD_SECONDS)
    await wait_until(lambda: not demo.state.faults, "a poll")
    run_id, events = await current_run(client, workflow_id)
    started = events[-1]
    assert started.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, started
    # The server's rule, which the tests rely on to tell what the next task will do.
    assert started.workflow_task_started_event_attributes.suggest_continue_as_new == suggested(started.event_id)
    return run_id, started


def suggested(event_id: int) -> bool:
    """Whether the server suggests continuing as new for a workflow task whose started event has this id."""
    return event_id >= SUGGEST_AFTER


async def hold_the_poll_before_a_hand_over(
    client: Client, http: httpx.AsyncClient, demo: DemoService, workflow_id: str
) -> str:
    """Hold poll after poll until the held one is the last before a hand-over: the next poll's workflow task
    will be the first one suggested. Returns (with that poll still held) the run it is in."""
    for _ in range(100):
        run_id, started = await hold_poll(client, http, demo, workflow_id)
        if not suggested(started.event_id) and suggested(started.event_id + EVENTS_PER_POLL):
            return run_id
    pytest.fail("no hand-over came")


async def test_auth_pause_at_a_hand_over_then_resume_is_not_lost(
    can_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    client = can_env.client
    async with start_worker(client, http, task_queue, worker_environ):
        handle = await start_job(client, demo, task_queue)
        async with terminated_unless_done(handle):
            paused_run = await hold_the_poll_before_a_hand_over(client, http, demo, handle.id)
            demo.state.token = ROTATED  # the API rotates its token: the hand-over task's poll gets a 401
            paused = await wait_for(handle, lambda s: s.state is JobState.AUTH_PAUSED, "auth_paused")
            assert (await handle.describe()).run_id == paused_run  # paused in the run, instead of handing over
            demo.state.token = DEMO_TOKEN
            await handle.signal(LongRunningJob.resume, {"note": "token fixed"})
            result: JobResult = await asyncio.wait_for(handle.result(), GUARD_SECONDS)
            final = await status_of(handle)

    assert result.state is JobState.SUCCEEDED
    runs = await runs_of(client, handle.id, handle.first_execution_run_id)
    [pause] = [run for run in runs if run.run_id == paused_run]
    [resume] = pause.signals("resume")
    # The poll refused was the one of the run's first task suggested to hand over; the resume was acted on in
    # that run, which then handed over with the pause undone.
    assert pause.first_suggested() < resume.event_id
    assert pause.continued_as_new
    after = runs[runs.index(pause) + 1].request.carried_status
    assert after is not None
    assert after.state is JobState.POLLING and after.paused_since is None and after.resume_note == "token fixed"
    assert after.last_error is not None and after.last_error.http_status == 401
    assert paused.deadline is not None and after.deadline is not None and after.deadline > paused.deadline
    assert final.resume_note == "token fixed" and final.runs == len(runs) == result.runs
    assert demo.state.jobs_created == 1 and result.job_id in demo.state.jobs


async def test_rate_limit_backoff_at_a_hand_over_is_carried_to_the_next_run(
    can_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    client = can_env.client
    async with start_worker(client, http, task_queue, worker_environ):
        handle = await start_job(client, demo, task_queue, initial_backoff_seconds=1.5)
        async with terminated_unless_done(handle):
            limited_run = await hold_the_poll_before_a_hand_over(client, http, demo, handle.id)
            await inject(http, demo, match="poll", status=429, retry_after="2")  # the hand-over task's poll
            result: JobResult = await asyncio.wait_for(handle.result(), GUARD_SECONDS)

    assert result.state is JobState.SUCCEEDED and result.total_error_count == 1
    runs = await runs_of(client, handle.id, handle.first_execution_run_id)
    [limited] = [run for run in runs if run.run_id == limited_run]
    after = runs[runs.index(limited) + 1]
    carried = after.request.carried_status
    # The run handed over in the middle of the backoff; the next one waits out the rest of it, then polls.
    assert carried is not None and carried.state is JobState.RATE_LIMITED
    assert carried.current_backoff_seconds == 2 and carried.next_backoff_seconds == 3
    assert carried.total_error_count == 1 and carried.last_error is not None and carried.last_error.http_status == 429
    assert after.timers()[0] == 2, after.timers()
    later = [*after.timers()[1:], *(timer for run in runs[runs.index(after) + 1 :] for timer in run.timers())]
    barrier = HAND_OVER_BARRIER.total_seconds()  # each hand-over waits on it (see _continue_as_new_if_due)
    assert later and set(later) == {QUICK, barrier}, later


async def test_callbacks_sent_while_the_hand_over_task_runs_are_counted(
    can_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    """Signals that arrive while a run is completing with continue-as-new: the server refuses that completion
    (unhandled command), the worker runs the task again with them, and the run hands over their count."""
    client = can_env.client
    gate = HandOverGate()
    async with gated_worker(client, http, task_queue, worker_environ, gate):
        handle = await start_job(client, demo, task_queue)
        async with terminated_unless_done(handle):
            try:
                assert await asyncio.to_thread(gate.reached.wait, GUARD_SECONDS), "no hand-over came"
                old_run = (await handle.describe()).run_id
                sent = 3
                for n in range(sent):
                    await handle.signal(LongRunningJob.callback, {"body": {"n": n}})
            finally:
                gate.release.set()
            result: JobResult = await asyncio.wait_for(handle.result(), GUARD_SECONDS)
            final = await status_of(handle)
    assert result.state is JobState.SUCCEEDED
    runs = await runs_of(client, handle.id, handle.first_execution_run_id)
    [old] = [run for run in runs if run.run_id == old_run]
    assert len(old.signals("callback")) == sent and old.continued_as_new
    refused = [
        e for e in old.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        and e.workflow_task_failed_event_attributes.cause
        == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND
    ]
    assert refused, "the server did not refuse the hand-over: this test no longer shows the task run again"
    carried = runs[runs.index(old) + 1].request.carried_status
    assert carried is not None and carried.callbacks_received == sent
    assert final.callbacks_received == sent


async def test_callbacks_that_reach_a_new_run_before_its_first_task_are_counted(
    can_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    """A worker stopping at a hand-over: the callbacks sent meanwhile reach the new run before it has run."""
    client = can_env.client
    gate = HandOverGate()
    first = gated_worker(client, http, task_queue, worker_environ, gate)
    first_running = asyncio.create_task(first.run())
    handle = await start_job(client, demo, task_queue)
    async with terminated_unless_done(handle):
        try:
            assert await asyncio.to_thread(gate.reached.wait, GUARD_SECONDS), "no hand-over came"
            old_run = (await handle.describe()).run_id
            # Stop the worker while it holds the hand-over task: it completes that task (the run continues as
            # new) and takes no other.
            with shutdown_begun() as begun:
                stopping = asyncio.create_task(first.shutdown())
                await asyncio.wait_for(begun.wait(), GUARD_SECONDS)
        finally:
            gate.release.set()
            await first.shutdown()
            await first_running
        await stopping
        new_run, events = await current_run(client, handle.id)
        assert new_run != old_run
        assert [e.event_type for e in events] == [
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED
        ]
        sent = 5
        for n in range(sent):
            await handle.signal(LongRunningJob.callback, {"body": {"n": n}})
        async with start_worker(client, http, task_queue, worker_environ):
            result: JobResult = await asyncio.wait_for(handle.result(), GUARD_SECONDS)
            final = await status_of(handle)
    assert result.state is JobState.SUCCEEDED
    runs = await runs_of(client, handle.id, handle.first_execution_run_id)
    [new] = [run for run in runs if run.run_id == new_run]
    assert before_first_task(new) == sent  # all delivered to the new run, before its first task
    if final.callbacks_received != sent:
        raise CallbacksLost(f"{sent} callbacks sent, {final.callbacks_received} counted")


class HandOverGate(Interceptor):
    """Holds the first live hand-over (continue-as-new) in its workflow task until the test releases it."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        gate = self

        class HeldHandOver(WorkflowInboundInterceptor):
            async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
                try:
                    return await super().execute_workflow(input)
                except workflow.ContinueAsNewError:
                    if not workflow.unsafe.is_replaying() and not gate.reached.is_set():
                        gate.reached.set()
                        gate.release.wait(GUARD_SECONDS)
                    raise

        return HeldHandOver


def gated_worker(
    client: Client, http: httpx.AsyncClient, task_queue: str, environ: dict[str, str], gate: HandOverGate
) -> Worker:
    """A worker whose first live hand-over waits for ``gate``. No sandbox, so the gate's events are the test's
    own objects; no deadlock detection (the SDK fails a task whose thread is busy for 2 s), so the gate may
    hold the task as long as the test needs. Debug mode would also turn it off, but runs tasks on the event
    loop's thread, which the gate would then block."""
    worker = new_worker(
        client, http, task_queue=task_queue, environ=environ, interceptors=[gate],
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    workflow_worker = worker._workflow_worker  # no public option for this
    assert workflow_worker is not None and workflow_worker._deadlock_timeout_seconds == 2
    workflow_worker._deadlock_timeout_seconds = None
    return worker


@contextlib.contextmanager
def shutdown_begun() -> Iterator[asyncio.Event]:
    """An event set when a worker logs that its shutdown begins: the SDK stops its pollers right after that
    line, in the same step, so once the test's next await returns, the worker takes no new task."""
    begun = asyncio.Event()
    loop = asyncio.get_running_loop()

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("Beginning worker shutdown"):
                loop.call_soon_threadsafe(begun.set)

    sdk_logger = logging.getLogger("temporalio.worker._worker")
    handler, level = Seen(), sdk_logger.level
    sdk_logger.addHandler(handler)
    sdk_logger.setLevel(logging.INFO)
    try:
        yield begun
    finally:
        sdk_logger.removeHandler(handler)
        sdk_logger.setLevel(level)


async def test_a_stream_of_callbacks_while_runs_hand_over_is_all_counted(
    can_env: WorkflowEnvironment, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    """Callbacks sent back to back while the job hands over about ten times: every one is counted."""
    client = can_env.client
    async with start_worker(client, http, task_queue, worker_environ):
        handle = await start_job(client, demo, task_queue, input={"work_polls": 60}, poll_interval_seconds=0.05)
        async with terminated_unless_done(handle):
            sent = 0
            while (await status_of(handle)).runs < 10:
                await handle.signal(LongRunningJob.callback, {"body": {"n": sent}})
                sent += 1
            result: JobResult = await asyncio.wait_for(handle.result(), GUARD_SECONDS)
            final = await status_of(handle)
    assert result.state is JobState.SUCCEEDED
    runs = await runs_of(client, handle.id, handle.first_execution_run_id)
    assert sum(len(run.signals("callback")) for run in runs) == sent  # Temporal delivered every one
    counted = [run.request.carried_status.callbacks_received if run.request.carried_status else 0 for run in runs]
    per_run = [
        (len(run.signals("callback")), after - before, before_first_task(run))
        for run, before, after in zip(runs, counted, [*counted[1:], final.callbacks_received], strict=True)
    ]
    if final.callbacks_received != sent:
        raise CallbacksLost(
            f"{sent} callbacks sent, {final.callbacks_received} counted; per run (delivered, counted, delivered "
            f"before its first workflow task): {per_run}"
        )


def before_first_task(run: Run) -> int:
    first_task = run.first(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED).event_id
    return sum(1 for s in run.signals("callback") if s.event_id < first_task)
