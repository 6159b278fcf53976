"""A deliberately small JSON path: ``a.b[0].c`` or ``$.a.b``; enough for every job API shape we ship.

A full JSONPath library would let specs express queries we could not promise to keep stable; a dotted path
with list indices covers where real APIs put an id, a status word, progress and a result.
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


class JsonPathError(ValueError):
    """The path is not well formed."""


def parse_path(path: str) -> list[str | int]:
    """Split ``a.b[0]`` into ``["a", "b", 0]``; ``""``, ``"$"`` and ``"."`` mean the whole document."""
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    text = text.lstrip(".")
    parts: list[str | int] = []
    pos = 0
    while pos < len(text):
        if text[pos] == ".":
            pos += 1
            continue
        match = _TOKEN.match(text, pos)
        if match is None:
            raise JsonPathError(f"bad JSON path {path!r} at position {pos}")
        parts.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
    return parts


def extract(document: Any, path: str) -> Any:
    """Return the value at ``path`` in ``document``, or ``None`` when any step is missing."""
    current = document
    for part in parse_path(path):
        if isinstance(part, int):
            if not isinstance(current, list) or part >= len(current):
                return None
            current = current[part]
        else:
            if not isinstance(current, dict) or part not in current:
                return None
            current = current[part]
    return current
