"""Encryption at rest on a real dev server, with the real demo service and a real worker.

What the Temporal server stores (the history fetched without the codec) must hold no plaintext input, signal
payload or result; the same history read with the codec, through the codec server over HTTP and through
``temporal workflow show --codec-endpoint`` must show them.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from demo_service import DemoService
from longjobs import EncryptionCodec, UserError, connect_client, new_worker
from longjobs._codec import ENCODING
from tests.codec.conftest import (
    MARKER,
    RESULT_TEXT,
    SIGNAL_MARKER,
    payloads_in,
    running_codec_server,
)
from tests.conftest import decoded_json_text, demo_request, unique_id
from workflows import SEARCH_ATTRIBUTE_KEYS, JobResult, JobState, LongRunningJob

SECRET_INPUT = {"work_polls": 1, "secret_note": MARKER}
# The project's, and the SDK's record of the patches a run went through (workflow.patched upserts it).
NOT_SECRET_SEARCH_ATTRIBUTES = {key.name for key in SEARCH_ATTRIBUTE_KEYS} | {"TemporalChangeVersion"}


async def run_secret_job(
    client: Client, demo: DemoService, http: httpx.AsyncClient, task_queue: str, worker_environ: dict[str, str],
    *, starter: Client | None = None, poll_mode: str | None = None,
) -> tuple[str, JobResult]:
    """A demo job whose input carries the marker, signalled once with another marker; the worker uses ``client``."""
    request = demo_request(demo, time_skipping=False, input=SECRET_INPUT, poll_interval_seconds=0.5,
                           poll_mode=poll_mode)
    async with new_worker(client, http, task_queue=task_queue, environ=worker_environ):
        handle: WorkflowHandle[Any, JobResult] = await (starter or client).start_workflow(
            LongRunningJob.run, request, id=unique_id("codec"), task_queue=task_queue,
            # Signal-with-start: the signal is in the history for sure (resume is ignored unless auth-paused).
            start_signal="resume", start_signal_args=[{"note": SIGNAL_MARKER}],
        )
        # Read back through the worker's client: a client without the codec cannot read an encrypted result.
        reader = client.get_workflow_handle(handle.id, result_type=JobResult)
        result = await asyncio.wait_for(reader.result(), 60)
    return handle.id, result


def history_payloads(history: WorkflowHistory) -> list[Payload]:
    return [payload for event in history.events for payload in payloads_in(event)]


async def raw_history_json(plain_client: Client, workflow_id: str) -> tuple[str, WorkflowHistory]:
    history = await plain_client.get_workflow_handle(workflow_id).fetch_history()
    return history.to_json(), history


@pytest.mark.parametrize("poll_mode", ["timer", None], ids=["timer", "default"])
async def test_raw_history_holds_no_plaintext_but_the_codec_reads_it(
    codec_client: Client, plain_client: Client, codec: EncryptionCodec, demo: DemoService,
    http: httpx.AsyncClient, task_queue: str, worker_environ: dict[str, str], poll_mode: str | None,
) -> None:
    workflow_id, result = await run_secret_job(
        codec_client, demo, http, task_queue, worker_environ, poll_mode=poll_mode
    )
    assert result.state is JobState.SUCCEEDED
    assert result.result["output"].startswith(RESULT_TEXT) and result.result["input"]["secret_note"] == MARKER

    raw, history = await raw_history_json(plain_client, workflow_id)
    swept = decoded_json_text(raw)
    for secret in (MARKER, SIGNAL_MARKER, RESULT_TEXT, demo.url):
        assert secret not in swept, f"{secret!r} is stored in plaintext"
    events = {event.WhichOneof("attributes") for event in history.events}
    assert {"workflow_execution_started_event_attributes", "workflow_execution_signaled_event_attributes",
            "activity_task_completed_event_attributes", "workflow_execution_completed_event_attributes"} <= events

    # Every payload is encrypted except kinds that never go through a codec: search attribute values, and the
    # SDK core's own bookkeeping of a local activity (its marker's "data": sequence number, activity type,
    # attempt, times; the local activity's result beside it is encrypted) and of a patch (its id). The search
    # attributes are only the project's JobState and JobApi, and carry nothing from the input or the result.
    search_attributes: dict[str, set[Any]] = {}
    bookkeeping: list[Payload] = []
    patches: list[Payload] = []
    searchable: list[Payload] = []
    for event in history.events:
        if event.HasField("upsert_workflow_search_attributes_event_attributes"):
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            for key, payload in fields.items():
                value = json.loads(payload.data)
                search_attributes.setdefault(key, set()).update(value if isinstance(value, list) else [value])
                searchable.append(payload)
        if event.HasField("marker_recorded_event_attributes"):
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == "core_patch":  # a patch (workflows' patched calls): details are its id
                patches.extend(p for details in marker.details.values() for p in details.payloads)
                continue
            assert marker.marker_name == "core_local_activity"
            bookkeeping.extend(marker.details["data"].payloads)
            assert all(p.metadata["encoding"] == ENCODING for p in marker.details["result"].payloads)
    assert set(search_attributes) <= NOT_SECRET_SEARCH_ATTRIBUTES
    assert search_attributes["JobState"] <= {state.value for state in JobState}
    assert search_attributes["JobApi"] == {"demo"}
    assert search_attributes.get("TemporalChangeVersion", set()) <= {"default-poll-mode-activity", "hand-over-on-timer"}
    assert all(json.loads(p.data)["activity_type"] == "poll_job" for p in bookkeeping)
    # Timer mode polls in local activities; the default (activity) mode polls inside one activity, whose input,
    # heartbeat details and result all go through the codec.
    assert bool(bookkeeping) == (poll_mode == "timer")
    patch_ids = {json.loads(p.data)["id"] for p in patches}
    assert patch_ids == {"hand-over-on-timer"} | ({"default-poll-mode-activity"} if poll_mode is None else set())
    unencrypted = [p for p in history_payloads(history) if p.metadata["encoding"] != ENCODING]
    assert all(p in bookkeeping or p in searchable or p in patches for p in unencrypted)
    assert len(history_payloads(history)) > len(unencrypted)

    # The same history, read with the codec, shows the input, the signal's note and the result.
    decoded = await codec.decode(history_payloads(history))
    readable = b"\n".join(p.data for p in decoded).decode()
    for secret in (MARKER, SIGNAL_MARKER, RESULT_TEXT):
        assert secret in readable
    # And so does a client with the codec reading the result.
    again = await codec_client.get_workflow_handle(workflow_id, result_type=JobResult).result()
    assert again == result


async def test_codec_server_and_temporal_cli_decode_the_stored_history(
    dev_env: WorkflowEnvironment, codec_client: Client, plain_client: Client, codec: EncryptionCodec,
    demo: DemoService, http: httpx.AsyncClient, task_queue: str, worker_environ: dict[str, str],
) -> None:
    workflow_id, _ = await run_secret_job(codec_client, demo, http, task_queue, worker_environ)
    _, history = await raw_history_json(plain_client, workflow_id)
    started = history.events[0].workflow_execution_started_event_attributes
    [stored_input] = started.input.payloads
    assert stored_input.metadata["encoding"] == ENCODING

    address = dev_env.client.service_client.config.target_host
    async with running_codec_server(codec, auth_token="cli-token") as url:
        # The UI's and CLI's call: POST /decode with the payload as protobuf JSON.
        answer = await http.post(f"{url}/decode", json={"payloads": [json_format.MessageToDict(stored_input)]},
                                 headers={"X-Namespace": "default", "Authorization": "Bearer cli-token"})
        assert answer.status_code == 200, answer.text
        [plain] = [json_format.ParseDict(item, Payload()) for item in answer.json()["payloads"]]
        assert plain.metadata["encoding"] == b"json/plain"
        assert json.loads(plain.data)["input"]["secret_note"] == MARKER

        # The temporal CLI, as a person holding the key runs it (JSON output keeps payload bytes base64, decoded).
        temporal = str(Path(sys.executable).parent / "temporal")
        show = [temporal, "workflow", "show", "--workflow-id", workflow_id, "--address", address,
                "--namespace", "default"]
        codec_flags = ["--codec-endpoint", url, "--codec-auth", "Bearer cli-token"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
        without = await _run(*show, "--output", "json", env=env)
        with_codec = await _run(*show, "--output", "json", *codec_flags, env=env)
        as_text = await _run(*show, *codec_flags, env=env)
    swept_without = decoded_json_text(without)
    assert MARKER not in swept_without and SIGNAL_MARKER not in swept_without and RESULT_TEXT not in swept_without
    assert "binary/encrypted" in swept_without
    swept_with = decoded_json_text(with_codec)
    assert MARKER in swept_with and SIGNAL_MARKER in swept_with and RESULT_TEXT in swept_with
    assert "binary/encrypted" not in swept_with
    [result_line] = [line for line in as_text.splitlines() if line.strip().startswith("Result ")]
    assert MARKER in result_line and RESULT_TEXT in result_line


async def _run(*args: str, env: dict[str, str]) -> str:
    process = await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, f"{args[1:3]} exited {process.returncode}: {err.decode()[-2000:]}"
    return out.decode()


async def test_connect_client_turns_the_codec_on_from_the_environment(
    dev_env: WorkflowEnvironment, plain_client: Client, keys_setting: str, codec: EncryptionCodec,
    demo: DemoService, http: httpx.AsyncClient, task_queue: str, worker_environ: dict[str, str],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """What worker.py and starter.py get: connect_client() reads LONGJOBS_CODEC_KEYS(_FILE)."""
    monkeypatch.setenv("TEMPORAL_ADDRESS", dev_env.client.service_client.config.target_host)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "default")
    monkeypatch.delenv("LONGJOBS_CODEC_KEYS", raising=False)
    monkeypatch.delenv("LONGJOBS_CODEC_KEYS_FILE", raising=False)

    unencrypted = await connect_client()
    assert unencrypted.data_converter is pydantic_data_converter

    monkeypatch.setenv("LONGJOBS_CODEC_KEYS", "not-a-key")
    with pytest.raises(UserError, match="LONGJOBS_CODEC_KEYS"):
        await connect_client()

    keys_file = tmp_path / "codec-keys"
    keys_file.write_text(keys_setting.replace(",", "\n") + "\n")
    monkeypatch.delenv("LONGJOBS_CODEC_KEYS")
    monkeypatch.setenv("LONGJOBS_CODEC_KEYS_FILE", str(keys_file))
    client = await connect_client()
    converter = client.data_converter
    assert isinstance(converter.payload_codec, EncryptionCodec)
    assert converter.payload_codec.key_ids == codec.key_ids
    assert converter.payload_converter_class is pydantic_data_converter.payload_converter_class
    assert converter.failure_converter_class is pydantic_data_converter.failure_converter_class

    workflow_id, result = await run_secret_job(client, demo, http, task_queue, worker_environ)
    assert result.state is JobState.SUCCEEDED
    raw, _ = await raw_history_json(plain_client, workflow_id)
    assert MARKER not in decoded_json_text(raw) and RESULT_TEXT not in decoded_json_text(raw)


async def test_turning_the_codec_on_keeps_unencrypted_workflows_readable(
    codec_client: Client, plain_client: Client, demo: DemoService, http: httpx.AsyncClient, task_queue: str,
    worker_environ: dict[str, str],
) -> None:
    """Started by a client without the codec, run by a worker with it: the job still succeeds and reads back."""
    workflow_id, result = await run_secret_job(
        codec_client, demo, http, task_queue, worker_environ, starter=plain_client
    )
    assert result.state is JobState.SUCCEEDED and result.result["input"]["secret_note"] == MARKER
    _, history = await raw_history_json(plain_client, workflow_id)
    started = history.events[0].workflow_execution_started_event_attributes
    assert started.input.payloads[0].metadata["encoding"] == b"json/plain"  # as the old client wrote it
    completed = history.events[-1].workflow_execution_completed_event_attributes
    assert completed.result.payloads[0].metadata["encoding"] == ENCODING  # what the worker wrote is encrypted
    assert await codec_client.get_workflow_handle(workflow_id, result_type=JobResult).result() == result
