"""Result analysis by a language model: one OpenAI-compatible chat-completions call, validated by pydantic.

The endpoint, model and key come from the worker (``LLM_BASE_URL``, ``LLM_MODEL``, ``LLM_API_KEY`` or the file
named by ``LLM_API_KEY_FILE``), never from history. Rate limits, server errors and auth failures are
classified like every other HTTP outcome, so the workflow backs off, pauses for ``resume`` or gives up the same
way; giving up costs the job nothing but its analysis.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError, field_validator

from activities._outcome import HttpOutcome, OutcomeClass, short
from jobspec import AnalyzeSpec

SYSTEM_PROMPT = (
    "You analyse the results of finished batch jobs for the people who ran them. Reply with one JSON object "
    'with the keys "summary" (a short paragraph), "findings" (a list of strings) and "recommendations" '
    "(a list of strings), and nothing else."
)


class Analysis(BaseModel):
    """What the model must return."""

    # No length keywords: strict structured-output modes reject some JSON Schema keywords.
    summary: str
    findings: list[str]
    recommendations: list[str]

    @field_validator("summary")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the summary is empty")
        return value


class AnalyzeInput(BaseModel):
    spec: AnalyzeSpec
    job_input: Any = None
    result: Any = None


def build_prompt(spec: AnalyzeSpec, job_input: Any, result: Any) -> tuple[str, int]:
    """The user prompt, and how many characters of the result were trimmed away to fit the budget."""
    result_text = result if isinstance(result, str) else json.dumps(result, indent=1, default=str)
    trimmed = max(0, len(result_text) - spec.max_result_chars)
    if trimmed:
        result_text = result_text[: spec.max_result_chars] + f"\n[… {trimmed} more characters trimmed]"
    input_text = json.dumps(job_input, default=str)[:2000]
    # One pass: a "{result}" inside the job's input must stay text, not receive the result.
    values = {"input": input_text, "result": result_text}
    return re.sub(r"\{(input|result)\}", lambda m: values[m.group(1)], spec.prompt), trimmed


def chat_body(model: str, messages: list[dict[str, str]], *, json_schema: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": messages, "temperature": 0}
    if json_schema:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "job_analysis", "strict": True, "schema": _strict_schema()},
        }
    return body


def _strict_schema() -> dict[str, Any]:
    schema = Analysis.model_json_schema()
    schema["additionalProperties"] = False
    return schema


class Refusal(Exception):
    """The model declined to answer (``message.refusal``): asking again will not help."""


def reply_text(document: Any) -> str | None:
    """The assistant's text in a chat-completions answer, or None when the answer has another shape."""
    try:
        message = document["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        return None
    if not isinstance(message, dict):
        return None
    if isinstance(message.get("refusal"), str) and not message.get("content"):
        raise Refusal(message["refusal"])
    content = message.get("content")
    return content if isinstance(content, str) else None


def parse_analysis(text: str) -> Analysis:
    """Validate a reply; tolerate a JSON object wrapped in a Markdown code fence."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`")
        stripped = stripped[stripped.find("{"):] if "{" in stripped else stripped
    return Analysis.model_validate_json(stripped)


def invalid(exc: ValidationError | ValueError) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'reply'}: {e['msg']}" for e in exc.errors()[:5])
    return short(str(exc), 200)


def analysis_outcome(analysis: Analysis, trimmed: int, repaired: bool) -> HttpOutcome:
    result = {"analysis": analysis.model_dump(), "trimmed_chars": trimmed, "repaired": repaired}
    return HttpOutcome(outcome=OutcomeClass.OK, result=result)
