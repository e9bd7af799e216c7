"""Query audit records across rotated files: time range, principal, event type,
minimum severity, with cursor pagination (`after_seq`)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from exogpu.security.audit import EventType, Severity, format_ts, log_files
from exogpu.security.audit_records import check_fields, parse_record

__all__ = ["AuditPage", "expand_paths", "iter_records", "query"]


@dataclass(frozen=True)
class AuditPage:
    records: list[dict[str, Any]]
    next_after: int | None  # pass as after_seq for the next page; None: no more

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "next_after": self.next_after}


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Each path with its rotated predecessors (PATH.N ... PATH.1), oldest first."""
    out: list[Path] = []
    for p in paths:
        found = log_files(p)
        if not found:
            raise FileNotFoundError(f"no audit log at {p}")
        out.extend(f for f in found if f not in out)
    return out


def iter_records(files: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Complete records in file order; a torn last line is skipped. A line that is not
    a bounded audit record is an AuditError naming the file, line and field: a query
    never skips what it cannot read (run `exogpu audit verify` to see what happened)."""
    for path in files:
        with open(path, "rb") as f:
            for ln, raw in enumerate(f, start=1):
                if not raw.endswith(b"\n"):
                    break
                where = f"{path}:{ln}"
                yield check_fields(parse_record(raw[:-1], where), where)


def _ts(value: datetime | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return format_ts(value.timestamp())


def query(
    paths: Iterable[str | os.PathLike[str]],
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    principal: str | None = None,
    event_types: Iterable[EventType | str] | None = None,
    min_severity: Severity | str | int | None = None,
    after_seq: int | None = None,
    limit: int = 100,
) -> AuditPage:
    """Records with since <= ts < until, oldest first, at most `limit`."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    lo, hi = _ts(since), _ts(until)
    types = {EventType(t).value for t in event_types} if event_types else None
    floor = Severity.parse(min_severity) if min_severity is not None else None
    allowed_sev = {s.label for s in Severity if floor is None or s >= floor}
    out: list[dict[str, Any]] = []
    for rec in iter_records(expand_paths(paths)):
        seq = rec.get("seq")
        if after_seq is not None and isinstance(seq, int) and seq <= after_seq:
            continue
        ts = rec.get("ts", "")
        if (lo is not None and ts < lo) or (hi is not None and ts >= hi):
            continue
        if principal is not None and rec.get("principal") != principal:
            continue
        if types is not None and rec.get("type") not in types:
            continue
        if rec.get("severity") not in allowed_sev:
            continue
        if len(out) == limit:
            return AuditPage(out, out[-1]["seq"])
        out.append(rec)
    return AuditPage(out, None)
