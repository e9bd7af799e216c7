"""Verify an audit log: its hash chain, its checkpoints, and name the first bad place.

Files may be given in any order: they are put in chain order by their first
sequence number. Each record must end with a newline, parse as a bounded JSON
record (`audit_records`), hash to its `hash` field, carry the next sequence number
and hold the previous record's hash in `prev`. The chain must start at seq 0 with
the genesis `prev`: a log whose first records or oldest files are gone fails,
unless the verifier is handed a checkpoint exported earlier (`anchor`) that the
log still holds, in which case the records up to it are vouched for by the hash
chain that ends in it.

The hash chain alone proves nothing against someone who can write the file (they
can rechain). With the verification key (`key`), every checkpoint
(`exogpu.security.audit_seal`) must be the next epoch, be signed by the key the
one before committed to (epoch 0: by `key`), and chain the checkpoint before.
An edit, insertion or deletion anywhere before a checkpoint breaks its
signature or the chain; a log wiped and started again, or sealed with another
key, fails at its first checkpoint; a handed checkpoint that the log no longer
holds means the log was cut short. Records after the last checkpoint are counted
as unsealed: the chain holds, but nothing vouches for them yet.

A log with no checkpoints (written without a key, or before sealing existed)
verifies its hash chain in "unsealed" mode; demanding a key of it fails.

A last line without a newline is what a crash in the middle of a write leaves
behind (the writer cuts it when the log is reopened). It cannot be told apart from a
record truncated on purpose, so it fails verification unless `allow_torn_tail` is
given, in which case it is reported as a warning and not counted.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from exogpu.security.audit import GENESIS, HASH_MARK, AuditError
from exogpu.security.audit_records import MAX_LINE_BYTES, parse_record
from exogpu.security.audit_seal import SEAL_TYPE, Checkpoint

__all__ = ["BadRecord", "VerifyReport", "record_hash_ok", "verify_files"]

Mode = Literal["sealed", "unsealed", "unkeyed"]


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
    # "sealed": checkpoints verified from the key or a handed checkpoint;
    # "unkeyed": checkpoints present but only checked against each other (no key);
    # "unsealed": no checkpoints, hash chain only.
    mode: Mode = "unsealed"
    checkpoints: int = 0  # checkpoints verified
    sealed_upto: int | None = None  # last seq a verified checkpoint (or anchor) covers
    unsealed_records: int = 0  # records after it
    last_checkpoint: dict[str, Any] | None = None
    log_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.first_bad is None

    def to_dict(self) -> dict[str, Any]:
        bad = self.first_bad
        return {
            "ok": self.ok,
            "mode": self.mode,
            "files": self.files,
            "records": self.records,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "last_hash": self.last_hash,
            "checkpoints": self.checkpoints,
            "sealed_upto": self.sealed_upto,
            "unsealed_records": self.unsealed_records,
            "last_checkpoint": self.last_checkpoint,
            "log_id": self.log_id,
            "warnings": self.warnings,
            "first_bad": None
            if bad is None
            else {"file": bad.file, "line": bad.line, "seq": bad.seq, "problem": bad.problem},
        }


def _first_seq(path: Path) -> int:
    with open(path, "rb") as f:
        line = f.readline(MAX_LINE_BYTES + 1)
    try:
        seq = parse_record(line.rstrip(b"\n"), str(path)).get("seq")
    except AuditError:
        return -1  # unreadable first line: put it first so it is reported
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else -1


def record_hash_ok(raw: bytes, digest: object) -> bool:
    """Whether a line (without newline) hashes to `digest` and ends with exactly it."""
    cut = raw.rfind(HASH_MARK)
    if cut < 0 or not isinstance(digest, str):
        return False
    if raw[cut:] != HASH_MARK + digest.encode() + b'"}':
        return False  # something after the hash, or a different hash text
    return hashlib.sha256(raw[:cut] + b"}").hexdigest() == digest


@dataclass
class _Where:
    file: str
    line: int
    seq: int


class _Failed(Exception):
    def __init__(self, bad: BadRecord) -> None:
        self.bad = bad


def verify_files(
    paths: list[str | os.PathLike[str]],
    *,
    allow_torn_tail: bool = False,
    key: str | None = None,
    anchor: Checkpoint | None = None,
    require_sealed: bool = False,
) -> VerifyReport:
    """Check the chain of `paths`; with `key` (hex, the log's verification key) or a
    handed checkpoint `anchor`, check its checkpoints too. `require_sealed`: records
    after the last checkpoint are a failure rather than reported as unsealed."""
    files = sorted((Path(p) for p in paths), key=_first_seq)
    report = VerifyReport(files=[str(p) for p in files])
    try:
        _verify(files, report, allow_torn_tail, key, anchor, require_sealed)
    except _Failed as failed:
        report.first_bad = failed.bad
    return report


def _verify(
    files: list[Path],
    report: VerifyReport,
    allow_torn_tail: bool,
    key: str | None,
    anchor: Checkpoint | None,
    require_sealed: bool,
) -> None:
    expected_seq: int | None = None
    prev_hash: str | None = None
    first_prev: str | None = None
    first: _Where | None = None
    last: _Where | None = None
    at_anchor: tuple[_Where, str] | None = None
    checkpoints: list[tuple[Checkpoint, _Where]] = []
    after_checkpoint: dict[int, _Where] = {}  # the record after each checkpoint

    def fail(path: Path | str, line: int, seq: int | None, problem: str) -> _Failed:
        return _Failed(BadRecord(str(path), line, seq, problem))

    for fi, path in enumerate(files):
        last_file = fi == len(files) - 1
        with open(path, "rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        torn = lines.pop()  # b"" when the file ends with a newline
        for ln, raw in enumerate(lines, start=1):
            where = f"{path}:{ln}"
            try:
                rec = parse_record(raw, where)
            except AuditError as exc:
                raise fail(path, ln, None, str(exc).removeprefix(where + ": ")) from None
            seq = rec.get("seq")
            if not isinstance(seq, int) or isinstance(seq, bool):
                raise fail(path, ln, None, "record has no integer seq")
            if not record_hash_ok(raw, rec.get("hash")):
                raise fail(path, ln, seq, "hash mismatch: the record's contents were edited")
            here = _Where(str(path), ln, seq)
            if expected_seq is None:
                if seq == 0 and rec.get("prev") != GENESIS:
                    raise fail(
                        path, ln, seq,
                        "first record does not start the chain (prev is not the genesis hash)",
                    )
                report.first_seq, first, first_prev = seq, here, str(rec.get("prev"))
            else:
                if seq != expected_seq:
                    what = "deleted before it" if seq > expected_seq else "out of order or repeated"
                    raise fail(
                        path, ln, seq, f"expected seq {expected_seq}, found {seq}: record(s) {what}"
                    )
                if rec.get("prev") != prev_hash:
                    raise fail(
                        path, ln, seq, "chain broken: prev is not the hash of the record before"
                    )
            if checkpoints and checkpoints[-1][0].seq == seq - 1:
                after_checkpoint[seq - 1] = here
            if rec.get("type") == SEAL_TYPE:
                try:
                    cp = Checkpoint.from_record(rec, raw.decode(), where)
                except AuditError as exc:
                    raise fail(path, ln, seq, str(exc).removeprefix(where + ": ")) from None
                checkpoints.append((cp, here))
            if anchor is not None and seq == anchor.seq:
                at_anchor = (here, rec["hash"])
            expected_seq = seq + 1
            prev_hash = rec["hash"]
            report.records += 1
            report.last_seq, report.last_hash = seq, prev_hash
            last = here
        if torn:
            where_torn = len(lines) + 1
            if last_file and allow_torn_tail:
                report.warnings.append(
                    f"{path}:{where_torn}: torn last line ({len(torn)} bytes, no line end) "
                    "ignored: an interrupted write"
                )
            else:
                raise fail(
                    path,
                    where_torn,
                    None,
                    "truncated record (no line end)"
                    + ("" if last_file else " in the middle of the chain"),
                )

    if first is None or last is None:
        if key is not None or anchor is not None:
            raise fail(files[0] if files else "(no files)", 0, None,
                       "no records: the log was wiped (or never written)")
        report.warnings.append("no records")
        return

    # -- where trust starts: seq 0, or a handed checkpoint the log still holds ---------
    anchored = False
    if anchor is not None:
        desc = f"the handed checkpoint (seq {anchor.seq}, epoch {anchor.epoch})"
        if anchor.seq > last.seq:
            raise fail(
                last.file, last.line, last.seq,
                f"tail missing: the log ends at seq {last.seq}, before {desc}: records and "
                "checkpoints were deleted from its end, or the log was wiped and started again",
            )
        if at_anchor is not None:
            if at_anchor[1] != anchor.hash:
                w = at_anchor[0]
                raise fail(
                    w.file, w.line, w.seq,
                    f"this record is not {desc}: it was replaced, or the checkpoint belongs to "
                    "another log",
                )
        elif not (first.seq == anchor.seq + 1 and first_prev == anchor.hash):
            raise fail(
                first.file, first.line, first.seq,
                f"head missing: the log starts at seq {first.seq}, after {desc}; records "
                f"{anchor.seq + 1}..{first.seq - 1} were deleted (hand a newer checkpoint)",
            )
        anchored = True
        if key is not None and anchor.epoch == 0 and anchor.key != key:
            raise fail(first.file, first.line, first.seq,
                       f"{desc} was not signed by the given key")
    if first.seq != 0 and not anchored:
        raise fail(
            first.file, first.line, first.seq,
            f"head missing: the log starts at seq {first.seq}, not 0: its first records or "
            "oldest files were deleted (or rotated away). Hand a checkpoint exported earlier "
            "(--from) to verify from there",
        )

    # -- the checkpoints -----------------------------------------------------------------
    trusted: bool
    if key is not None and first.seq == 0:
        exp_key, exp_epoch, exp_prev_seal, start, trusted = key, 0, GENESIS, -1, True
    elif anchored:
        assert anchor is not None
        exp_key, exp_epoch, exp_prev_seal = anchor.next_key, anchor.epoch + 1, anchor.hash
        start, trusted = anchor.seq, True
        report.sealed_upto, report.log_id = anchor.seq, anchor.log_id
        report.last_checkpoint = _describe(anchor)
        if key is not None:
            report.warnings.append(
                f"verified from the handed checkpoint at seq {anchor.seq}: the records before "
                "it are vouched for by it, not checked against the key"
            )
    elif checkpoints:
        cp0 = checkpoints[0][0]
        exp_key, exp_epoch, exp_prev_seal = cp0.key, cp0.epoch, cp0.prev_seal
        start, trusted = -1, False
    else:
        exp_key, exp_epoch, exp_prev_seal, start, trusted = "", 0, GENESIS, -1, False

    low = first.seq if report.sealed_upto is None else report.sealed_upto + 1
    for cp, w in checkpoints:
        if cp.seq <= start:
            continue
        if cp.epoch != exp_epoch:
            raise fail(
                w.file, w.line, w.seq,
                f"checkpoint epoch {cp.epoch}, expected epoch {exp_epoch}: checkpoints were "
                "deleted or repeated, or the log was sealed again with a new key",
            )
        if cp.key != exp_key:
            if exp_epoch == 0 and key is not None:
                problem = (
                    f"checkpoint epoch 0 is signed by key {cp.key[:16]}..., not the "
                    f"verification key {key[:16]}...: the log was sealed with another key (a "
                    "key from another log, or the log was wiped and started again)"
                )
            else:
                problem = (
                    f"checkpoint names key {cp.key[:16]}..., not the key the checkpoint before "
                    "committed to: a forged checkpoint"
                )
            raise fail(w.file, w.line, w.seq, problem)
        if cp.prev_seal != exp_prev_seal:
            raise fail(w.file, w.line, w.seq,
                       "checkpoint does not chain the checkpoint before it (prev_seal)")
        if not cp.signature_ok(exp_key):
            raise fail(
                w.file, w.line, w.seq,
                f"checkpoint signature does not verify: records seq {low}..{cp.seq - 1} "
                "(since the checkpoint before) or the checkpoint itself were rewritten",
            )
        if report.log_id is not None and trusted and cp.log_id != report.log_id:
            raise fail(w.file, w.line, w.seq, "checkpoint names another log")
        exp_key, exp_epoch, exp_prev_seal = cp.next_key, cp.epoch + 1, cp.hash
        report.checkpoints += 1
        report.sealed_upto, report.log_id = cp.seq, cp.log_id
        report.last_checkpoint = _describe(cp)
        low = cp.seq + 1

    if trusted:
        report.mode = "sealed"
    elif checkpoints:
        report.mode = "unkeyed"
        report.warnings.append(
            "checkpoints were checked only against each other: without the verification key "
            "(--key) they prove nothing"
        )
    if key is not None and report.sealed_upto is None:
        raise fail(
            first.file, first.line, first.seq,
            f"no checkpoint: the log is unsealed ({report.records} records written without a "
            "sealing key, or before sealing existed), so nothing can be verified with the key",
        )
    if report.sealed_upto is None:
        report.unsealed_records = report.records
    else:
        report.unsealed_records = last.seq - report.sealed_upto
    if require_sealed and report.unsealed_records:
        after = report.sealed_upto
        w = first if after is None or after < first.seq else after_checkpoint.get(after, first)
        begin = first.seq if after is None else after + 1
        raise fail(
            w.file, w.line, begin,
            f"{report.unsealed_records} record(s) after the last checkpoint "
            f"(seq {begin}..{last.seq}) are unsealed",
        )


def _describe(cp: Checkpoint) -> dict[str, Any]:
    return {"epoch": cp.epoch, "seq": cp.seq, "ts": cp.ts, "reason": cp.reason}
