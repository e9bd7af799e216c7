"""Reading one audit line as outside input: bounded, and wrong in a typed way.

An audit file is written by exogpu but can be edited by anyone who can write
it, so the writer reopening it, `exogpu audit verify` and `exogpu audit query`
all parse its lines here. Nesting, integer size and line length are bounded with
the limits of `exogpu.bounded_input`; a line outside them is an `AuditError`
that names the file, the line and the field.

Lines the writer made nest a few levels at most, so the common path is one
`json.loads` with guarded numbers; only a line with more brackets than the depth
limit is scanned bracket by bracket first (it may be hostile).
"""

from __future__ import annotations

import json
import math
from typing import Any

from exogpu.bounded_input import MAX_DEPTH, MAX_INT_DIGITS, load_json
from exogpu.security.audit import AuditError

__all__ = ["MAX_LINE_BYTES", "check_fields", "parse_record"]

# The writer refuses records larger than this, and recovery reads this much of a tail.
MAX_LINE_BYTES = 1 << 20


class _TooBig:
    """Stands in for an integer too long to accept, so the field can be named."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _parse_int(text: str) -> int | _TooBig:
    digits = len(text.lstrip("-"))
    return _TooBig(digits) if digits > MAX_INT_DIGITS else int(text)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number an audit record holds")


def _deep_field(raw: bytes) -> str | None:
    """The top-level field whose value nests deeper than MAX_DEPTH, if any.

    Walks the bytes once, skipping strings (with their escapes), remembering
    the last key seen at the top level."""
    depth = 0
    key = "document"
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == 0x22:  # a string: find its end
            j = i + 1
            while j < n and raw[j] != 0x22:
                j += 2 if raw[j] == 0x5C else 1
            if depth == 1:
                key = raw[i + 1 : j].decode("utf-8", "replace")
            i = j + 1
            continue
        if c in b"[{":
            depth += 1
            if depth > MAX_DEPTH:
                return key
        elif c in b"]}":
            depth -= 1
        i += 1
    return None


def _check(value: Any, path: str, where: str) -> None:
    if isinstance(value, _TooBig):
        raise AuditError(
            f"{where}: field {path} is an integer too large ({value.digits} digits, "
            f"at most {MAX_INT_DIGITS})"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise AuditError(f"{where}: field {path} is not a finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            _check(v, f"{path}.{k}" if path else str(k), where)
    elif isinstance(value, list):
        for index, v in enumerate(value):
            _check(v, f"{path}[{index}]", where)


def parse_record(raw: bytes, where: str) -> dict[str, Any]:
    """One line (without its newline) as a dict; AuditError naming `where` and the field."""
    if len(raw) > MAX_LINE_BYTES:
        raise AuditError(f"{where}: a line of {len(raw)} bytes, longer than {MAX_LINE_BYTES}")
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH:
        field = _deep_field(raw)
        if field is not None:
            raise AuditError(f"{where}: field {field} is nested deeper than {MAX_DEPTH} levels")
        # Brackets inside strings only: the general bounded parser settles it.
        value: Any = load_json(raw, what=where, error=AuditError, max_bytes=MAX_LINE_BYTES)
    else:
        try:
            value = json.loads(raw, parse_int=_parse_int, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            raise AuditError(f"{where}: not a JSON record (edited or truncated: {exc})") from None
    if not isinstance(value, dict):
        raise AuditError(f"{where}: not a JSON object")
    _check(value, "", where)
    return value


# The fields a reader relies on, and the types the writer gives them.
_FIELDS: dict[str, tuple[type, ...]] = {
    "seq": (int,),
    "ts": (str,),
    "type": (str,),
    "severity": (str,),
    "principal": (str, type(None)),
    "device": (str, type(None)),
    "outcome": (str,),
    "details": (dict,),
}


def check_fields(rec: dict[str, Any], where: str) -> dict[str, Any]:
    """The record, if each field a reader uses has the writer's type; else AuditError."""
    for name, types in _FIELDS.items():
        value = rec.get(name)
        if not isinstance(value, types) or isinstance(value, bool):
            raise AuditError(
                f"{where}: field {name} is {'missing' if name not in rec else 'of a wrong type'}"
                f" ({type(value).__name__})"
            )
    return rec
