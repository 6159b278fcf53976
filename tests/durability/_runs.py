"""The runs of a job that continued as new: followed from its first run, with their histories and inputs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from workflows import JobRequest

# Temporal warns about every workflow task of a run past this many events (and ends the run at 51,200).
HISTORY_WARNING = 10_240


@dataclass
class Run:
    """One run of a job: its id, its history and the request it started with."""

    run_id: str
    events: list[HistoryEvent]
    request: JobRequest

    @property
    def continued_as_new(self) -> bool:
        return self.events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW

    def signals(self, name: str) -> list[HistoryEvent]:
        return [
            e for e in self.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
            and e.workflow_execution_signaled_event_attributes.signal_name == name
        ]

    def first(self, event_type: EventType.ValueType) -> HistoryEvent:
        return next(e for e in self.events if e.event_type == event_type)

    def first_suggested(self) -> int:
        """The event id of the run's first workflow task the server suggested continuing as new for."""
        return next(
            e.event_id for e in self.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
            and e.workflow_task_started_event_attributes.suggest_continue_as_new
        )

    def timers(self) -> list[float]:
        return [
            e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds()
            for e in self.events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
        ]


async def runs_of(client: Client, workflow_id: str, first_run_id: str) -> list[Run]:
    """Every run of a job, first to last, by following each continued-as-new event to the next run."""
    runs: list[Run] = []
    run_id = first_run_id
    while True:
        events = [e async for e in client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history_events()]
        started = events[0].workflow_execution_started_event_attributes
        [request] = await client.data_converter.decode(started.input.payloads, [JobRequest])
        runs.append(Run(run_id, events, request))
        if not runs[-1].continued_as_new:
            return runs
        run_id = events[-1].workflow_execution_continued_as_new_event_attributes.new_execution_run_id


@contextlib.asynccontextmanager
async def terminated_unless_done(handle: WorkflowHandle[Any, Any]) -> AsyncIterator[None]:
    """Terminate the job if the test fails before it ended: a leftover run would stall the time-skipping server
    (it does not skip time while a run nobody serves has a workflow task due)."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(RPCError):
            await handle.terminate(reason="test over")
        raise
