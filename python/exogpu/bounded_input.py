"""Parsers for untrusted JSON and TOML that bound size, nesting and numbers.

Python's own parsers recurse once per level of nesting and accept integers of
any length, so hostile input reaches a user as ``RecursionError`` or
``OverflowError``. Every parser of outside input in exogpu goes through these
functions instead, and each caller passes the typed error it raises, so a bad
file is reported the way that caller reports every other mistake.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

MAX_DEPTH = 32
MAX_BYTES = 16 << 20
# Enough for any count or size exogpu meets (2**63), far below what breaks float().
MAX_INT_DIGITS = 20

ErrorFactory = Callable[[str], Exception]


def _scan_depth(text: str, what: str, error: ErrorFactory, max_depth: int, *, toml: bool) -> None:
    """Refuses nesting deeper than max_depth before a recursive parser sees it.

    Counts brackets outside strings; both JSON and TOML's inline tables and
    arrays nest with them. Quotes are tracked so a bracket inside a string does
    not count (TOML's literal and multi-line strings included)."""
    depth = 0
    quote = ""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if quote:
            if c == "\\" and quote in ('"', '"""'):
                i += 2
                continue
            if text.startswith(quote, i):
                i += len(quote)
                quote = ""
                continue
        elif c in "\"'":
            triple = c * 3
            quote = triple if text.startswith(triple, i) else c
            i += len(quote)
            continue
        elif c == "#" and toml:
            newline = text.find("\n", i)
            i = n if newline < 0 else newline
            continue
        elif c in "[{":
            depth += 1
            if depth > max_depth:
                raise error(f"{what}: nested deeper than {max_depth} levels")
        elif c in "]}":
            depth -= 1
        i += 1


def _check_tree(
    value: Any, path: str, what: str, error: ErrorFactory, depth: int, max_depth: int
) -> None:
    """Bounds the parsed value, naming the field: depth (TOML's dotted keys
    nest without brackets), integer size, and non-finite floats."""
    if depth > max_depth:
        raise error(f"{what}: {path or 'document'} is nested deeper than {max_depth} levels")
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) >= 10**MAX_INT_DIGITS:
            digits = len(str(abs(value)))
            raise error(f"{what}: {path or 'value'} is an integer too large ({digits} digits)")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise error(f"{what}: {path or 'value'} is not a finite number")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            field = f"{path}.{key}" if path else str(key)
            _check_tree(item, field, what, error, depth + 1, max_depth)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_tree(item, f"{path}[{index}]", what, error, depth + 1, max_depth)


def _check_size(text: str | bytes, what: str, error: ErrorFactory, max_bytes: int) -> str:
    if len(text) > max_bytes:
        raise error(f"{what}: {len(text)} bytes is more than the limit of {max_bytes}")
    if isinstance(text, bytes):
        try:
            return text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(f"{what}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    return text


def _parse_int(digits: str) -> int:
    # Up to 1000 digits parse (cheaply) so that _check_tree can name the field.
    if len(digits.lstrip("-")) > 1000:
        raise ValueError(f"an integer of {len(digits)} digits is too large")
    return int(digits)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number exogpu accepts")


def load_json(
    text: str | bytes,
    *,
    what: str,
    error: ErrorFactory,
    max_depth: int = MAX_DEPTH,
    max_bytes: int = MAX_BYTES,
) -> Any:
    """json.loads with size, depth and number bounds; raises error(message)."""
    source = _check_size(text, what, error, max_bytes)
    _scan_depth(source, what, error, max_depth, toml=False)
    try:
        value = json.loads(source, parse_int=_parse_int, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise error(f"{what}: not valid JSON ({exc.msg} at {where})") from None
    except (ValueError, RecursionError) as exc:
        raise error(f"{what}: {exc}") from None
    _check_tree(value, "", what, error, 0, max_depth)
    return value


def load_toml(
    text: str | bytes,
    *,
    what: str,
    error: ErrorFactory,
    max_depth: int = MAX_DEPTH,
    max_bytes: int = MAX_BYTES,
) -> dict[str, Any]:
    """tomllib.loads with size, depth and number bounds; raises error(message)."""
    source = _check_size(text, what, error, max_bytes)
    _scan_depth(source, what, error, max_depth, toml=True)
    try:
        table: dict[str, Any] = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what}: not valid TOML ({exc})") from None
    except (ValueError, RecursionError) as exc:
        raise error(f"{what}: {exc}") from None
    _check_tree(table, "", what, error, 0, max_depth)
    return table
