"""Verify an audit log's hash chain and name the first bad record.

Files may be given in any order: they are put in chain order by their first
sequence number. Each record must end with a newline, parse as JSON, hash to its
`hash` field, carry the next sequence number and hold the previous record's hash in
`prev`. The first record must be seq 0 with the genesis `prev`, unless earlier
records were rotated away; that is allowed and reported as a warning.

A last line without a newline is what a crash in the middle of a write leaves
behind (the writer cuts it when the log is reopened). It cannot be told apart from a
record truncated on purpose, so it fails verification unless `allow_torn_tail` is
given, in which case it is reported as a warning and not counted.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from exogpu.security.audit import GENESIS, HASH_MARK

__all__ = ["BadRecord", "VerifyReport", "verify_files"]


@dataclass(frozen=True)
class BadRecord:
    file: str
    line: int
    seq: int | None
    problem: str

    def __str__(self) -> str:
        seq = f" (seq {self.seq})" if self.seq is not None else ""
        return f"{self.file}:{self.line}{seq}: {self.problem}"


@dataclass
class VerifyReport:
    files: list[str]
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    first_bad: BadRecord | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.first_bad is None


def _first_seq(path: Path) -> int:
    with open(path, "rb") as f:
        line = f.readline()
    try:
        return int(json.loads(line)["seq"])
    except (ValueError, KeyError, TypeError):
        return -1  # unreadable first line: put it first so it is reported


def _check_hash(raw: bytes, digest: object) -> bool:
    cut = raw.rfind(HASH_MARK)
    if cut < 0 or not isinstance(digest, str):
        return False
    if raw[cut:] != HASH_MARK + digest.encode() + b'"}':
        return False  # something after the hash, or a different hash text
    return hashlib.sha256(raw[:cut] + b"}").hexdigest() == digest


def verify_files(
    paths: list[str | os.PathLike[str]], *, allow_torn_tail: bool = False
) -> VerifyReport:
    files = sorted((Path(p) for p in paths), key=_first_seq)
    report = VerifyReport(files=[str(p) for p in files])
    expected_seq: int | None = None
    prev_hash: str | None = None

    def bad(path: Path, line: int, seq: int | None, problem: str) -> VerifyReport:
        report.first_bad = BadRecord(str(path), line, seq, problem)
        return report

    for fi, path in enumerate(files):
        last_file = fi == len(files) - 1
        with open(path, "rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        torn = lines.pop()  # b"" when the file ends with a newline
        for ln, raw in enumerate(lines, start=1):
            try:
                rec = json.loads(raw)
                if not isinstance(rec, dict):
                    raise ValueError("not an object")
            except ValueError:
                return bad(path, ln, None, "not a JSON record (edited or truncated)")
            seq = rec.get("seq")
            if not isinstance(seq, int):
                return bad(path, ln, None, "record has no integer seq")
            if not _check_hash(raw, rec.get("hash")):
                return bad(path, ln, seq, "hash mismatch: the record's contents were edited")
            if expected_seq is None:
                if seq == 0 and rec.get("prev") != GENESIS:
                    return bad(
                        path,
                        ln,
                        seq,
                        "first record does not start the chain (prev is not the genesis hash)",
                    )
                if seq != 0:
                    report.warnings.append(
                        f"chain starts at seq {seq} in {path}: earlier records are not in the "
                        "given files (rotated away?)"
                    )
                report.first_seq = seq
            else:
                if seq != expected_seq:
                    what = "deleted before it" if seq > expected_seq else "out of order or repeated"
                    return bad(
                        path, ln, seq, f"expected seq {expected_seq}, found {seq}: record(s) {what}"
                    )
                if rec.get("prev") != prev_hash:
                    return bad(
                        path, ln, seq, "chain broken: prev is not the hash of the record before"
                    )
            expected_seq = seq + 1
            prev_hash = rec["hash"]
            report.records += 1
            report.last_seq, report.last_hash = seq, prev_hash
        if torn:
            where = len(lines) + 1
            if last_file and allow_torn_tail:
                report.warnings.append(
                    f"{path}:{where}: torn last line ({len(torn)} bytes, no line end) ignored: "
                    "an interrupted write"
                )
            else:
                return bad(
                    path,
                    where,
                    None,
                    "truncated record (no line end)"
                    + ("" if last_file else " in the middle of the chain"),
                )
    if report.records == 0:
        report.warnings.append("no records")
    return report
