"""API specs: how one external job API spells submit, status, result, cancel and auth, as data.

A spec is a JSON file under ``specs/`` (a preset) or anywhere on disk. ``resolve_spec`` turns a spec and its
variables into a concrete :class:`ApiSpec` whose URLs hold no placeholders left to fill but the job id. The
concrete spec travels in the workflow input, so a running job never changes behaviour when a spec file is
edited later. Secrets are never part of a spec: it only names where the worker reads them.
"""

from jobspec._jsonpath import JsonPathError, extract
from jobspec._loader import (
    PRESETS_DIR,
    SCHEMA_PATH,
    SpecError,
    list_presets,
    load_spec,
    resolve_spec,
    spec_json_schema,
)
from jobspec._models import (
    ActionSpec,
    AnalyzeSpec,
    ApiSpec,
    AuthSpec,
    CallbackSpec,
    CancelSpec,
    Condition,
    HttpTimeouts,
    JobPhase,
    OutcomeOverride,
    ResultSpec,
    StatusSpec,
    SubmitSpec,
    VariableSpec,
)

__all__ = [
    "PRESETS_DIR",
    "SCHEMA_PATH",
    "ActionSpec",
    "AnalyzeSpec",
    "ApiSpec",
    "AuthSpec",
    "CallbackSpec",
    "CancelSpec",
    "Condition",
    "HttpTimeouts",
    "JobPhase",
    "JsonPathError",
    "OutcomeOverride",
    "ResultSpec",
    "SpecError",
    "StatusSpec",
    "SubmitSpec",
    "VariableSpec",
    "extract",
    "list_presets",
    "load_spec",
    "resolve_spec",
    "spec_json_schema",
]
