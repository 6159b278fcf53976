"""Last of the suite: no credential value the tests handed out appears in any history, log line or output.

Runs after everything else (its folder sorts last) over what the whole session left: every workflow history on
the session's dev server (payloads decoded from base64), every log record, every command's output and every
``worker.py`` log.
"""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment

from tests.conftest import SECRET_VALUES, SEEN_OUTPUT, WORKER_LOGS, decoded_json_text


async def test_no_credential_in_any_history_log_or_command_output(dev_env: WorkflowEnvironment) -> None:
    secrets = {value for value in SECRET_VALUES if len(value) >= 8}
    places: list[tuple[str, str]] = [("a log record or command output", text) for text in SEEN_OUTPUT]
    places += [(f"worker log {path.name}", path.read_text(errors="replace")) for path in WORKER_LOGS if path.exists()]
    histories = 0
    async for execution in dev_env.client.list_workflows():
        handle = dev_env.client.get_workflow_handle(execution.id, run_id=execution.run_id)
        history = await handle.fetch_history()
        places.append((f"history of {execution.id}", decoded_json_text(history.to_json())))
        histories += 1
    leaks = sorted({(where, secret[:4] + "…") for where, text in places for secret in secrets if secret in text})
    assert not leaks, leaks
    # The check looked at something real (when only part of the suite runs, there may be little to look at).
    assert secrets
    print(f"checked {len(secrets)} secrets in {histories} histories and {len(places) - histories} outputs")
