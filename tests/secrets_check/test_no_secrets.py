"""The suite's credential check (``_no_credential_anywhere_after_the_session`` in tests/conftest.py) runs when
each session ends, over everything it left. These tests show that check finds what it looks for."""

from __future__ import annotations

import base64
import json

from tests.conftest import DEMO_TOKEN, SECRET_VALUES, decoded_json_text, leaks


def test_the_check_finds_a_credential_inside_a_base64_payload_of_a_history() -> None:
    payload = base64.b64encode(json.dumps({"headers": {"Authorization": f"Bearer {DEMO_TOKEN}"}}).encode()).decode()
    history = json.dumps({"events": [{"eventType": "EVENT_TYPE_MARKER_RECORDED", "data": payload}]})
    assert DEMO_TOKEN not in history  # only decoding finds it
    assert leaks({DEMO_TOKEN}, [("history of job-1", decoded_json_text(history))]) == [("history of job-1", "test…")]


def test_the_check_passes_text_without_credentials_and_knows_the_suites_token() -> None:
    assert leaks({DEMO_TOKEN}, [("a log record or command output", "polled job_1: running (***)")]) == []
    assert DEMO_TOKEN in SECRET_VALUES
