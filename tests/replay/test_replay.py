"""Replay every recorded LongRunningJob history against the current workflow code.

A change to ``workflows/`` that would make a running job fail its next workflow task (a command added, removed
or reordered without ``workflow.patched``) fails ``test_history_replays`` here. The histories are recorded by
``python -m tests.replay.record`` (see that module); no server is needed to replay them.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from workflows import JOB_STATE, LongRunningJob

HISTORIES = Path(__file__).parent / "histories"
FILES = sorted(HISTORIES.glob("*.json"))

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


@pytest.mark.parametrize("file", FILES, ids=[f.name for f in FILES])
async def test_history_replays(file: Path) -> None:
    """The current code makes the very commands this history recorded (raises NondeterminismError otherwise)."""
    await replayer(LongRunningJob).replay_workflow(load(file))


def test_every_path_has_a_history() -> None:
    recorded = {path_of(f) for f in FILES}
    assert recorded == set(EXPECTED_PATHS), "re-record with: python -m tests.replay.record"


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
    assert upserts
    assert all(JOB_STATE.name in e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
               for e in upserts)


def _markers_and_activities(path: str) -> tuple[set[str], set[str]]:
    events = load(HISTORIES / f"{path}.json").events
    markers = {e.marker_recorded_event_attributes.marker_name for e in events
               if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED}
    activities = {e.activity_task_scheduled_event_attributes.activity_type.name for e in events
                  if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED}
    return markers, activities


def test_default_mode_histories_went_through_the_patch_and_poll_in_one_activity() -> None:
    """Jobs started since the default became the activity mode: the patch marker, polls inside watch_job."""
    for path in ("default_mode_success", "default_mode_auth_pause_resume"):
        markers, activities = _markers_and_activities(path)
        assert "core_patch" in markers and "core_local_activity" not in markers, (path, markers)
        assert "watch_job" in activities, (path, activities)


def test_timer_histories_predate_the_patch() -> None:
    """The timer-mode paths were recorded before the default changed: no patch marker, as in a job that was
    running then; replaying them shows such a job keeps polling with timers."""
    markers, activities = _markers_and_activities("success")
    assert markers == {"core_local_activity"} and "watch_job" not in activities


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
