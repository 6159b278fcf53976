"""The small JSON path: parsing and extraction."""

from __future__ import annotations

from typing import Any

import pytest

from jobspec import JsonPathError, extract
from jobspec._jsonpath import parse_path

DOC: dict[str, Any] = {
    "a": {"b": 1, "c": [10, {"d": "deep"}], "empty": [], "none": None, "zero": 0, "false": False},
    "list": [{"b": "first"}, {"b": "second"}],
    "with space": "ok",
    "0": "string key",
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a.b", 1),
        ("$.a.b", 1),
        ("$a.b", 1),
        (".a.b", 1),
        (" a.b ", 1),
        ("a.c[0]", 10),
        ("a.c[1].d", "deep"),
        ("$.a.c[1].d", "deep"),
        ("list[0].b", "first"),
        ("list[1].b", "second"),
        ("list[1]b", "second"),  # a dot after an index is optional
        ("a..b", 1),
        ("with space", "ok"),
        ("0", "string key"),  # a bare number is a key, not an index
        ("a.zero", 0),
        ("a.false", False),
        ("a.empty", []),
    ],
)
def test_extract(path: str, expected: Any) -> None:
    result = extract(DOC, path)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize("path", ["", "$", ".", "$.", "  "])
def test_empty_path_is_the_whole_document(path: str) -> None:
    assert extract(DOC, path) is DOC


@pytest.mark.parametrize(
    "path",
    [
        "missing",
        "a.missing",
        "a.b.c",  # through a number
        "a.c[2]",  # past the end
        "a.empty[0]",
        "a.none.x",
        "a[0]",  # index on a dict
        "list.b",  # key on a list
        "with space[0]",  # index on a string
        "[0]",  # the document is not a list
    ],
)
def test_missing_is_none(path: str) -> None:
    assert extract(DOC, path) is None


@pytest.mark.parametrize(
    ("document", "path", "expected"),
    [
        ([1, [2, 3]], "[1][0]", 2),
        ([{"id": "x"}], "$[0].id", "x"),
        ("scalar", "", "scalar"),
        (None, "a", None),
        (None, "", None),
    ],
)
def test_extract_from_other_documents(document: Any, path: str, expected: Any) -> None:
    assert extract(document, path) == expected


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("a.b[0].c", ["a", "b", 0, "c"]),
        ("$.a[12]", ["a", 12]),
        ("[3][4]", [3, 4]),
        ("", []),
        ("$", []),
        (".", []),
    ],
)
def test_parse_path(path: str, parts: list[str | int]) -> None:
    assert parse_path(path) == parts


@pytest.mark.parametrize("path", ["a[x]", "a[-1]", "a[", "a]", "a[0", "[]", "a[1.5]", "a.b]c"])
def test_malformed_path_raises(path: str) -> None:
    with pytest.raises(JsonPathError, match="bad JSON path") as info:
        parse_path(path)
    assert repr(path) in str(info.value)
    with pytest.raises(JsonPathError):
        extract(DOC, path)


def test_json_path_error_is_a_value_error() -> None:
    assert issubclass(JsonPathError, ValueError)
