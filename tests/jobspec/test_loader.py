"""Loading, validating and resolving specs: every problem is one readable SpecError."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jobspec import ApiSpec, JobPhase, SpecError, list_presets, load_spec, resolve_spec

MINIMAL: dict[str, Any] = {
    "name": "mini",
    "base_url": "https://api.example.com",
    "status": {"states": {"done": "succeeded", "busy": "running"}},
}

# A spec with every kind of variable: required with env, required without env, defaulted.
TEMPLATED: dict[str, Any] = {
    "name": "tpl",
    "description": "uses {region} in prose, which is never substituted",
    "base_url": "{base_url}",
    "variables": {
        "base_url": {"env": "TPL_URL", "default": "http://default.test"},
        "region": {"env": "TPL_REGION"},
        "tenant": {},
    },
    "auth": {"type": "bearer", "secret_file": "~/{tenant}.token"},
    "submit": {
        "path": "/{tenant}/jobs",
        "body": {"region": "{region}", "data": "$input", "tags": ["{tenant}", "fixed"]},
        "headers": {"X-Region": "{region}"},
    },
    "status": {"path": "/{tenant}/jobs/{job_id}", "states": {"ok": "succeeded"}},
    "result": {"path": "/{tenant}/jobs/{job_id}/result"},
    "cancel": {"method": "DELETE", "path": "/{tenant}/jobs/{job_id}"},
}

REQUIRED = {"region": "eu", "tenant": "acme"}


def write(tmp_path: Path, content: str | dict[str, Any], name: str = "spec.json") -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return str(path)


def with_changes(base: dict[str, Any], **sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(base))
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


# -- load_spec -----------------------------------------------------------------------------------------------


def test_demo_preset_loads_and_validates() -> None:
    spec = load_spec("demo")
    assert spec.name == "demo"
    assert "demo" in list_presets()
    assert spec.auth.type == "bearer"
    assert spec.auth.secret_file_env == "DEMO_API_TOKEN_FILE"
    assert spec.status.states["queued"] is JobPhase.PENDING
    assert spec.status.states["succeeded"] is JobPhase.SUCCEEDED
    assert spec.cancel is not None and spec.cancel.path == "/jobs/{job_id}/cancel"
    assert spec.variables["base_url"].env == "DEMO_API_URL"


def test_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(SpecError) as info:
        load_spec("no-such-api")
    message = str(info.value)
    assert "'no-such-api'" in message
    assert "known: " in message and "demo" in message
    assert "\n" not in message


def test_spec_file_is_loaded_by_path(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, MINIMAL))
    assert spec.name == "mini"
    assert spec.submit.path == "/jobs"  # defaults filled in


@pytest.mark.parametrize("name", ["missing.json", "sub/dir/missing.json"])
def test_missing_spec_file(tmp_path: Path, name: str) -> None:
    path = str(tmp_path / name)
    with pytest.raises(SpecError, match="spec file not found") as info:
        load_spec(path)
    assert path in str(info.value)


def test_directory_is_not_a_spec_file(tmp_path: Path) -> None:
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(str(tmp_path / "dir.json"))


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  "name": "x",\n  oops\n}')
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not valid JSON")
    assert "line 3 column 3" in message


def test_non_utf8_file_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes('{"name": "caf\u00e9"}'.encode("latin-1"))
    with pytest.raises(SpecError):
        load_spec(str(path))


@pytest.mark.parametrize(
    ("data", "message_parts"),
    [
        (with_changes(MINIMAL, status={"stauts_path": "x"}), ["status.stauts_path", "Extra inputs are not permitted"]),
        (with_changes(MINIMAL, submitt={}), ["submitt", "Extra inputs"]),
        (with_changes(MINIMAL, status={"states": {"done": "finished"}}), ["status.states.done"]),
        (with_changes(MINIMAL, auth={"type": "bearer"}), ["auth", "needs secret_env, secret_file or secret_file_env"]),
        (with_changes(MINIMAL, auth={"type": "digest", "secret_env": "X"}), ["auth.type"]),
        (with_changes(MINIMAL, submit={"job_id_path": None}), ["submit", "job_id_path or job_id_from_location"]),
        (with_changes(MINIMAL, status={"progress_scale": 0}), ["status.progress_scale"]),
        (with_changes(MINIMAL, timeouts={"read_seconds": -1}), ["timeouts.read_seconds"]),
        ({"base_url": "http://x"}, ["name: Field required", "status: Field required"]),
        ([1, 2], ["(top level)"]),
    ],
)
def test_invalid_spec_names_the_field_path(tmp_path: Path, data: Any, message_parts: list[str]) -> None:
    path = write(tmp_path, json.dumps(data))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for part in message_parts:
        assert part in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "states",
    [
        {"queued": "pending", "running": "running", "failed": "failed"},
        {"done": "cancelled"},
    ],
)
def test_states_that_never_succeed_are_refused(tmp_path: Path, states: dict[str, str]) -> None:
    with pytest.raises(SpecError, match="maps no word to 'succeeded'"):
        load_spec(write(tmp_path, with_changes(MINIMAL, status={"states": states})))


def test_status_needs_a_word_or_a_done_flag(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"status: .*set status_path and states .* or done_path"):
        load_spec(write(tmp_path, with_changes(MINIMAL, status={"states": {}})))


# -- resolve_spec --------------------------------------------------------------------------------------------

TPL = ApiSpec.model_validate(TEMPLATED)


@pytest.mark.parametrize(
    ("variables", "environ", "expected"),
    [
        ({"base_url": "http://var.test"}, {"TPL_URL": "http://env.test"}, "http://var.test"),
        ({}, {"TPL_URL": "http://env.test"}, "http://env.test"),
        ({}, {}, "http://default.test"),
        ({}, {"TPL_URL": ""}, "http://default.test"),  # an empty env var is unset
    ],
)
def test_var_beats_env_beats_default(variables: dict[str, str], environ: dict[str, str], expected: str) -> None:
    assert resolve_spec(TPL, {**REQUIRED, **variables}, environ=environ).base_url == expected


def test_required_variable_from_env() -> None:
    spec = resolve_spec(TPL, {"tenant": "acme"}, environ={"TPL_REGION": "us"})
    assert spec.submit.headers == {"X-Region": "us"}


def test_substitution_fills_every_request_section_and_keeps_the_rest() -> None:
    spec = resolve_spec(TPL, REQUIRED, environ={})
    assert spec.submit.path == "/acme/jobs"
    assert spec.submit.body == {"region": "eu", "data": "$input", "tags": ["acme", "fixed"]}
    assert spec.submit.headers == {"X-Region": "eu"}
    assert spec.status.path == "/acme/jobs/{job_id}"  # the runtime placeholder is left for the activity
    assert spec.result is not None and spec.result.path == "/acme/jobs/{job_id}/result"
    assert spec.cancel is not None and spec.cancel.path == "/acme/jobs/{job_id}"
    # Names, descriptions and auth sources are taken as written.
    assert spec.description == TEMPLATED["description"]
    assert spec.auth.secret_file == "~/{tenant}.token"


def test_resolved_spec_has_no_variables_and_round_trips_as_json() -> None:
    spec = resolve_spec(TPL, REQUIRED, environ={})
    assert spec.variables == {}
    assert ApiSpec.model_validate_json(spec.model_dump_json()) == spec
    # Resolving again is a no-op: nothing is left to fill.
    assert resolve_spec(spec, {}, environ={}) == spec


def test_demo_preset_resolves_with_default_and_env() -> None:
    assert resolve_spec(load_spec("demo"), {}, environ={}).base_url == "http://127.0.0.1:8000"
    resolved = resolve_spec(load_spec("demo"), {}, environ={"DEMO_API_URL": "http://10.0.0.1:9"})
    assert resolved.base_url == "http://10.0.0.1:9"
    assert resolved.status.path == "/jobs/{job_id}"
    assert ApiSpec.model_validate_json(resolved.model_dump_json()) == resolved


def test_unknown_var_is_refused() -> None:
    with pytest.raises(SpecError) as info:
        resolve_spec(TPL, {**REQUIRED, "colour": "red"}, environ={})
    message = str(info.value)
    assert "'colour'" in message
    assert "base_url, region, tenant" in message


def test_unknown_var_on_a_spec_without_variables() -> None:
    with pytest.raises(SpecError, match=r"has no variable 'x' \(it has: none\)"):
        resolve_spec(ApiSpec.model_validate(MINIMAL), {"x": "1"}, environ={})


def test_missing_required_variable_names_the_flag_and_env_var() -> None:
    with pytest.raises(SpecError) as info:
        resolve_spec(TPL, {"tenant": "acme"}, environ={})
    message = str(info.value)
    assert "--var region=VALUE" in message
    assert "TPL_REGION" in message


def test_missing_required_variable_without_env_var() -> None:
    with pytest.raises(SpecError) as info:
        resolve_spec(TPL, {"region": "eu"}, environ={})
    message = str(info.value)
    assert "--var tenant=VALUE" in message
    assert "or set" not in message


@pytest.mark.parametrize(
    ("sections", "where"),
    [
        ({"status": {"path": "/jobs/{jobid}"}}, "status.path"),
        ({"submit": {"body": {"a": ["{nope}"]}}}, "submit.body.a[0]"),
        ({"submit": {"headers": {"X-A": "{nope}"}}}, "submit.headers.X-A"),
        ({"base_url": "https://{host}/v1"}, "base_url"),
    ],
)
def test_unknown_placeholder_is_refused(sections: dict[str, Any], where: str) -> None:
    spec = ApiSpec.model_validate(with_changes(MINIMAL, **sections))
    with pytest.raises(SpecError) as info:
        resolve_spec(spec, {}, environ={})
    message = str(info.value)
    assert message.startswith(f"{where}: unknown variable {{")
    assert "declare it under 'variables'" in message


@pytest.mark.parametrize("base_url", ["ftp://files.test", "api.test", "http://", "/relative", "file:///etc/passwd"])
def test_non_http_base_url_is_refused(base_url: str) -> None:
    with pytest.raises(SpecError, match="is not an http"):
        resolve_spec(TPL, {**REQUIRED, "base_url": base_url}, environ={})


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:8000", "https://api.test/v2", "http://x"])
def test_http_base_urls_are_accepted(base_url: str) -> None:
    assert resolve_spec(TPL, {**REQUIRED, "base_url": base_url}, environ={}).base_url == base_url


def test_variable_values_are_not_substituted_again() -> None:
    # A value that looks like a placeholder is data, not a template.
    spec = resolve_spec(TPL, {"region": "{tenant}", "tenant": "acme"}, environ={})
    assert spec.submit.headers == {"X-Region": "{tenant}"}
