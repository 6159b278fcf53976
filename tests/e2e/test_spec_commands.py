"""starter.py's spec tooling as a user runs it: list presets, check a spec file, export the schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from jobspec import list_presets, spec_json_schema
from tests.e2e.conftest import ROOT


def starter(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "starter.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_specs_lists_every_preset_on_one_line() -> None:
    done = starter("specs")
    assert done.returncode == 0
    names = [line.split()[0] for line in done.stdout.splitlines()]
    assert names == list_presets()


def test_check_spec_accepts_a_preset_file() -> None:
    done = starter("check-spec", "specs/ray-jobs.json")
    assert done.returncode == 0
    assert "valid spec for API 'ray-jobs'" in done.stdout


def test_check_spec_explains_each_problem_with_its_field_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "status": {"stauts_path": "s", "states": {"ok": "succeeded"}},
                               "submit": {"job_id_path": None}, "auth": {"type": "bearer"}}))
    done = starter("check-spec", str(bad))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    problems = done.stderr.splitlines()[1:]
    assert any(line.strip().startswith("status.stauts_path:") for line in problems), done.stderr
    assert any(line.strip().startswith("submit:") and "job_id_path" in line for line in problems), done.stderr
    assert any(line.strip().startswith("auth:") and "secret_env" in line for line in problems), done.stderr


def test_check_spec_with_vars_reports_missing_ones(tmp_path: Path) -> None:
    done = starter("check-spec", "specs/ogc-processes.json", "--var", "base_url=http://127.0.0.1:1")
    assert done.returncode == 2
    assert "--var process=VALUE" in done.stderr


def test_spec_schema_prints_the_schema() -> None:
    done = starter("spec-schema")
    assert done.returncode == 0
    assert json.loads(done.stdout) == spec_json_schema()


def test_start_refuses_an_unreachable_api_and_starts_nothing() -> None:
    done = starter("start", "--api", "ray-jobs", "--var", "base_url=http://127.0.0.1:1", "--input", "{}")
    assert done.returncode == 2
    assert done.stderr.strip().startswith("starter.py start: error: cannot reach the API at http://127.0.0.1:1")
    assert len(done.stderr.strip().splitlines()) == 1
