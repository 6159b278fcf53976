"""Finding, validating and resolving specs; every problem becomes one readable ``SpecError``."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from jobspec._models import ApiSpec

PRESETS_DIR = Path(__file__).resolve().parent.parent / "specs"
"""Where the shipped presets live, one ``NAME.json`` each."""

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Filled per request by the activities, never by variables.
RUNTIME_PLACEHOLDERS = frozenset({"job_id", "workflow_id", "result_id"})


class SpecError(ValueError):
    """A spec cannot be found, parsed, validated or resolved. The message is one line, fit for a user.

    ``problems`` lists each problem on its own (with its field path) for tools that explain them one by one.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


SCHEMA_PATH = PRESETS_DIR / "schema" / "api-spec.schema.json"
"""The exported JSON Schema of the spec format (``starter.py spec-schema`` writes what belongs here)."""


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file, for editors' completion and validation."""
    schema = ApiSpec.model_json_schema(by_alias=True)
    schema["$id"] = "https://longjobs.invalid/api-spec.schema.json"
    schema["title"] = "longjobs API spec"
    return schema


def list_presets() -> list[str]:
    """Names of the shipped presets."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.json"))


def _validation_problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        problems.append(f"{where}: {err['msg']}")
    return problems


def load_spec(name_or_path: str) -> ApiSpec:
    """Load a preset by name, or a spec file by path, and validate it."""
    candidate = Path(name_or_path)
    if name_or_path.endswith(".json") or os.sep in name_or_path:
        path = candidate
        if not path.is_file():
            raise SpecError(f"spec file not found: {name_or_path}")
    else:
        path = PRESETS_DIR / f"{name_or_path}.json"
        if not path.is_file():
            known = ", ".join(list_presets()) or "none"
            raise SpecError(f"unknown API {name_or_path!r} (known: {known}; or give a path to a spec .json file)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        return ApiSpec.model_validate(raw)
    except ValidationError as exc:
        problems = _validation_problems(exc)
        raise SpecError(f"{path}: " + "; ".join(problems), problems) from exc


def _substitute(template: Any, values: Mapping[str, str], where: str) -> Any:
    """Fill ``{name}`` in every string of a JSON value; runtime placeholders are left for the activity."""
    if isinstance(template, str):

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in RUNTIME_PLACEHOLDERS:
                return match.group(0)
            if name not in values:
                raise SpecError(f"{where}: unknown variable {{{name}}} (declare it under 'variables')")
            return values[name]

        return _PLACEHOLDER.sub(fill, template)
    if isinstance(template, list):
        return [_substitute(item, values, f"{where}[{i}]") for i, item in enumerate(template)]
    if isinstance(template, dict):
        return {key: _substitute(value, values, f"{where}.{key}") for key, value in template.items()}
    return template


def resolve_spec(
    spec: ApiSpec, variables: Mapping[str, str], environ: Mapping[str, str] | None = None
) -> ApiSpec:
    """Return the spec with every variable filled: ``variables`` first, then its env var, then its default."""
    env = os.environ if environ is None else environ
    unknown = sorted(set(variables) - set(spec.variables))
    if unknown:
        declared = ", ".join(sorted(spec.variables)) or "none"
        raise SpecError(f"API {spec.name!r} has no variable {unknown[0]!r} (it has: {declared})")
    values: dict[str, str] = {}
    for name, var in spec.variables.items():
        if name in variables:
            values[name] = variables[name]
        elif var.env and env.get(var.env):
            values[name] = env[var.env]
        elif var.default is not None:
            values[name] = var.default
        else:
            hint = f" or set {var.env}" if var.env else ""
            raise SpecError(f"API {spec.name!r} needs --var {name}=VALUE{hint}")
    # Only the request-shaping parts are templates; names, descriptions and auth sources are taken as written.
    data = spec.model_dump(mode="json")
    for section in ("base_url", "submit", "status", "result", "cancel", "allowed_origins"):
        data[section] = _substitute(data[section], values, section)
    # Keep "$input" meaning the job input: it has no braces, so substitution leaves it alone.
    data["variables"] = {}
    resolved = ApiSpec.model_validate(data)
    if not re.match(r"^https?://[^/]+", resolved.base_url):
        raise SpecError(f"API {spec.name!r}: base_url {resolved.base_url!r} is not an http(s) URL")
    return resolved
