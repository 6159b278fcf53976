"""Replay every recorded LongRunningJob history against the current workflow code.

A change to ``workflows/`` that would make a running job fail its next workflow task (a command added, removed
or reordered without ``workflow.patched``) fails ``test_history_replays`` here. The histories are recorded by
``python -m tests.replay.record`` (see that module); no server is needed to replay them.

``histories/*.json`` are the current recordings, one per path. ``histories/before-<patch id>/`` keeps the
recordings made before that patch: runs like them may still be open on a worker being upgraded, so they are
replayed as long as the patch is in the code.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from workflows import JOB_STATE, LongRunningJob
from workflows._job_workflow import HAND_OVER_BARRIER, HAND_OVER_ON_TIMER_PATCH

HISTORIES = Path(__file__).parent / "histories"
FILES = sorted(HISTORIES.glob("*.json"))
EARLIER = sorted(HISTORIES.glob("before-*/*.json"))
BEFORE_HAND_OVER_ON_TIMER = HISTORIES / f"before-{HAND_OVER_ON_TIMER_PATCH}"

# Each path the recorder drives, and how its (last) run ends.
COMPLETED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
FAILED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED
CANCELED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED
CONTINUED = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
EXPECTED_PATHS = {
    "success": COMPLETED,
    "rate_limit": COMPLETED,
    "auth_pause_resume": COMPLETED,
    "permanent_error": FAILED,
    "error_limit": FAILED,
    "timeout": FAILED,
    "cancel": CANCELED,
    "continue_as_new": COMPLETED,
    "callback": COMPLETED,
    "notify_and_action": COMPLETED,
    "default_mode_success": COMPLETED,
    "default_mode_auth_pause_resume": COMPLETED,
}


def path_of(file: Path) -> str:
    """``continue_as_new-run2.json`` -> ``continue_as_new``."""
    return file.stem.split("-run")[0]


def load(file: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(f"replay-{path_of(file)}", file.read_text())


def replayer(*workflows: type) -> Replayer:
    return Replayer(workflows=list(workflows), data_converter=pydantic_data_converter)


@pytest.mark.parametrize("file", FILES + EARLIER, ids=[str(f.relative_to(HISTORIES)) for f in FILES + EARLIER])
async def test_history_replays(file: Path) -> None:
    """The current code makes the very commands this history recorded (raises NondeterminismError otherwise)."""
    await replayer(LongRunningJob).replay_workflow(load(file))


def test_every_path_has_a_history() -> None:
    recorded = {path_of(f) for f in FILES}
    assert recorded == set(EXPECTED_PATHS), "re-record with: python -m tests.replay.record"
    assert {path_of(f) for f in BEFORE_HAND_OVER_ON_TIMER.glob("*.json")} == set(EXPECTED_PATHS)


@pytest.mark.parametrize("path", sorted(EXPECTED_PATHS))
def test_history_ends_the_way_its_path_does(path: str) -> None:
    """A recording that went astray (wrong ending, an unexpected continue-as-new) does not pass as that path."""
    runs = sorted((f for f in FILES if path_of(f) == path), key=lambda f: (len(f.name), f.name))
    assert runs, f"no history for {path}"
    endings = [load(f).events[-1].event_type for f in runs]
    assert endings[-1] == EXPECTED_PATHS[path]
    assert all(ending == CONTINUED for ending in endings[:-1])
    if path == "continue_as_new":
        assert len(runs) >= 3, "the chain should have continued as new at least twice"
    else:
        assert len(runs) == 1


def test_histories_carry_the_job_state_upserts() -> None:
    """Recorded as in production (dev server, ``publish_job_state``): replay covers the upsert commands too."""
    success = load(HISTORIES / "success.json")
    upserts = [e for e in success.events if e.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES]
    fields = [set(e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields)
              for e in upserts]
    # The SDK upserts TemporalChangeVersion itself for a patch; every other upsert is the job's state.
    assert sum(JOB_STATE.name in f for f in fields) >= 3, fields
    assert all(JOB_STATE.name in f or f == {"TemporalChangeVersion"} for f in fields), fields


def _events(file: Path) -> list[HistoryEvent]:
    return list(load(file).events)


def _patches(events: list[HistoryEvent]) -> set[str]:
    """The ids of the patches a run went through (their markers' ``patch-data``)."""
    return {
        json.loads(e.marker_recorded_event_attributes.details["patch-data"].payloads[0].data)["id"]
        for e in events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == "core_patch"
    }


def _markers_and_activities(events: list[HistoryEvent]) -> tuple[set[str], set[str]]:
    markers = {e.marker_recorded_event_attributes.marker_name for e in events
               if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED}
    activities = {e.activity_task_scheduled_event_attributes.activity_type.name for e in events
                  if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED}
    return markers, activities


def test_default_mode_histories_went_through_the_patch_and_poll_in_one_activity() -> None:
    """Jobs started since the default became the activity mode: the patch marker, polls inside watch_job."""
    for folder in (HISTORIES, BEFORE_HAND_OVER_ON_TIMER):
        for path in ("default_mode_success", "default_mode_auth_pause_resume"):
            events = _events(folder / f"{path}.json")
            markers, activities = _markers_and_activities(events)
            assert "default-poll-mode-activity" in _patches(events), (folder, path)
            assert "core_local_activity" not in markers and "watch_job" in activities, (folder, path, activities)


def test_timer_histories_predate_the_default_mode_patch() -> None:
    """The timer-mode paths were first recorded before the default changed: no patch marker at all, as in a job
    that was running then; replaying them shows such a job keeps polling with timers."""
    markers, activities = _markers_and_activities(_events(BEFORE_HAND_OVER_ON_TIMER / "success.json"))
    assert markers == {"core_local_activity"} and "watch_job" not in activities


def test_current_runs_hand_over_on_a_timer_and_earlier_ones_do_not() -> None:
    """Every run of the current chain went through the hand-over patch, and each one that continued as new
    did so in the task of the hand-over timer; the chain recorded before the patch hands over straight after
    a poll, which its runs replay."""
    barrier = HAND_OVER_BARRIER.total_seconds()
    for folder, patched in ((HISTORIES, True), (BEFORE_HAND_OVER_ON_TIMER, False)):
        runs = sorted(folder.glob("continue_as_new-run*.json"), key=lambda f: (len(f.name), f.name))
        for file in runs:
            events = _events(file)
            assert (HAND_OVER_ON_TIMER_PATCH in _patches(events)) is patched, file
            if events[-1].event_type != CONTINUED:
                continue
            timers = [e for e in events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
            last_timer = timers[-1].timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
            assert (last_timer.total_seconds() == barrier) is patched, (file, last_timer)
            # Nothing but the timer's firing and its workflow task between the timer and the hand-over.
            tail = [e.event_type for e in events[events.index(timers[-1]) + 1 :]]
            if patched:
                assert tail == [
                    EventType.EVENT_TYPE_TIMER_FIRED, EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
                    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
                    CONTINUED,
                ], (file, tail)


# -- the replay test can fail: a workflow change that is not replay-safe ---------------------------------------


@workflow.defn(name="LongRunningJob", sandboxed=False)
class ChangedLongRunningJob:
    """An incompatible "new version": waits one second before doing anything the old code did first."""

    @workflow.run
    async def run(self, request: dict[str, Any]) -> Any:
        await workflow.sleep(timedelta(seconds=1))
        raise AssertionError("replay should have failed at the first command")


async def test_an_incompatible_change_fails_replay() -> None:
    with pytest.raises(NondeterminismError):
        await replayer(ChangedLongRunningJob).replay_workflow(load(HISTORIES / "success.json"))


async def test_an_incompatible_change_is_reported_without_raising_when_asked() -> None:
    result = await replayer(ChangedLongRunningJob).replay_workflow(
        load(HISTORIES / "success.json"), raise_on_replay_failure=False
    )
    assert isinstance(result.replay_failure, NondeterminismError)
