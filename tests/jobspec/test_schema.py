"""The exported JSON Schema matches the spec model, and every preset points editors at it."""

from __future__ import annotations

import json

from jobspec import PRESETS_DIR, SCHEMA_PATH, list_presets, spec_json_schema


def test_committed_schema_is_current() -> None:
    committed = json.loads(SCHEMA_PATH.read_text())
    # Re-export after a model change: python starter.py spec-schema > specs/schema/api-spec.schema.json
    assert committed == spec_json_schema()


def test_schema_knows_the_sections_and_forbids_unknown_keys() -> None:
    schema = spec_json_schema()
    assert {"name", "submit", "status", "result", "cancel", "auth", "$schema"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["name", "status"]


def test_every_preset_names_the_schema() -> None:
    for name in list_presets():
        raw = json.loads((PRESETS_DIR / f"{name}.json").read_text())
        assert raw["$schema"] == "./schema/api-spec.schema.json", name
