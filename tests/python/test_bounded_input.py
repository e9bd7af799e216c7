"""Hostile JSON and TOML become the caller's typed error, never a traceback."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exogpu.bounded_input import MAX_DEPTH, load_json, load_toml


class BadFile(ValueError):
    pass


def test_deep_json_is_refused_before_recursing() -> None:
    with pytest.raises(BadFile, match=r"plan\.json: nested deeper than 32 levels"):
        load_json("[" * 100_000 + "]" * 100_000, what="plan.json", error=BadFile)


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"name": "[" * 500 + '\\"{'})
    assert load_json(text, what="x", error=BadFile) == {"name": "[" * 500 + '\\"{'}


def test_huge_integer_names_the_field() -> None:
    with pytest.raises(BadFile, match="too large"):
        load_json('{"layers": [{"bytes": ' + "9" * 5000 + "}]}", what="p", error=BadFile)
    with pytest.raises(BadFile, match=r"t\.toml: a\.b is an integer too large"):
        load_toml("[a]\nb = " + "9" * 25 + "\n", what="t.toml", error=BadFile)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_refused(constant: str) -> None:
    with pytest.raises(BadFile):
        load_json('{"x": ' + constant + "}", what="p", error=BadFile)


def test_deep_toml_inline_and_dotted_keys() -> None:
    with pytest.raises(BadFile, match="nested deeper"):
        load_toml("a = " + "[" * 5000 + "]" * 5000, what="policy.toml", error=BadFile)
    with pytest.raises(BadFile, match="nested deeper"):
        load_toml("a = " + "{b = " * 2000 + "1" + "}" * 2000, what="policy.toml", error=BadFile)
    dotted = ".".join(f"k{i}" for i in range(MAX_DEPTH + 5)) + " = 1\n"
    with pytest.raises(BadFile, match="nested deeper"):
        load_toml(dotted, what="policy.toml", error=BadFile)


def test_toml_comments_and_literal_strings_are_not_brackets() -> None:
    text = "# " + "[" * 40 + "\nx = '" + "[" * 40 + "'\n"
    assert load_toml(text, what="t.toml", error=BadFile) == {"x": "[" * 40}


def test_size_and_encoding_limits() -> None:
    with pytest.raises(BadFile, match="more than the limit"):
        load_json(b" " * 101, what="p", error=BadFile, max_bytes=100)
    with pytest.raises(BadFile, match="not UTF-8"):
        load_json(b'{"a": "\xff"}', what="p", error=BadFile)
    with pytest.raises(BadFile, match=r"not valid JSON \(Expecting value at line 1 column 7\)"):
        load_json('{"a": }', what="p", error=BadFile)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="[]{}\"'#=\\\n ax1.,:", max_size=400))
def test_arbitrary_text_is_a_value_or_the_typed_error(text: str) -> None:
    for loader in (load_json, load_toml):
        with contextlib.suppress(BadFile):
            loader(text, what="f", error=BadFile)
