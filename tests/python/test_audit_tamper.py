"""Each kind of tampering breaks the chain at the first bad record, and says where."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from exogpu.security.audit import AuditLog, EventType, log_files
from exogpu.security.audit_verify import verify_files


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "audit.log"
    with AuditLog(path, max_bytes=3000, retention=10) as log:
        for i in range(40):
            log.log(EventType.MEMORY_ALLOCATE, principal="alice", device="cpu:0",
                    details={"nbytes": 4096 * i})
    assert len(log_files(path)) >= 3
    assert verify_files(log_files(path)).ok
    return path


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def locate(path: Path, seq: int) -> tuple[Path, int]:
    for f in log_files(path):
        for i, line in enumerate(lines_of(f)):
            if json.loads(line)["seq"] == seq:
                return f, i
    raise AssertionError(seq)


def rewrite(f: Path, lines: list[str]) -> None:
    f.write_text("".join(lines))


def test_edited_record(log_path: Path) -> None:
    f, i = locate(log_path, 17)
    lines = lines_of(f)
    lines[i] = lines[i].replace('"nbytes":69632', '"nbytes":1')
    rewrite(f, lines)
    bad = verify_files(log_files(log_path)).first_bad
    assert bad is not None
    assert (bad.file, bad.line, bad.seq) == (str(f), i + 1, 17)
    assert "edited" in bad.problem


def test_edited_record_with_recomputed_hash_breaks_the_next(log_path: Path) -> None:
    import hashlib

    f, i = locate(log_path, 20)
    lines = lines_of(f)
    body = lines[i][: lines[i].rfind(',"hash":"')].replace('"alice"', '"mallory"')
    digest = hashlib.sha256((body + "}").encode()).hexdigest()
    lines[i] = body + f',"hash":"{digest}"}}\n'
    rewrite(f, lines)
    bad = verify_files(log_files(log_path)).first_bad
    assert bad is not None and bad.seq == 21 and "chain broken" in bad.problem


def test_deleted_record(log_path: Path) -> None:
    f, i = locate(log_path, 12)
    lines = lines_of(f)
    del lines[i]
    rewrite(f, lines)
    bad = verify_files(log_files(log_path)).first_bad
    assert bad is not None and bad.seq == 13
    assert "expected seq 12, found 13" in bad.problem and "deleted" in bad.problem


def test_reordered_records(log_path: Path) -> None:
    f, i = locate(log_path, 25)
    lines = lines_of(f)
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    rewrite(f, lines)
    bad = verify_files(log_files(log_path)).first_bad
    assert bad is not None and bad.seq == 26 and bad.line == i + 1
    assert "expected seq 25, found 26" in bad.problem


def test_truncated_record_in_the_middle(log_path: Path) -> None:
    f, i = locate(log_path, 8)
    lines = lines_of(f)
    lines[i] = lines[i][:60] + "\n"
    rewrite(f, lines)
    bad = verify_files(log_files(log_path)).first_bad
    assert bad is not None and (bad.file, bad.line) == (str(f), i + 1)
    assert "truncated" in bad.problem


def test_truncated_last_record(log_path: Path) -> None:
    text = log_path.read_text()
    log_path.write_text(text[:-40])  # the last record cut short, no line end
    strict = verify_files(log_files(log_path))
    assert strict.first_bad is not None and "truncated record (no line end)" in \
        strict.first_bad.problem
    lenient = verify_files(log_files(log_path), allow_torn_tail=True)
    assert lenient.ok and lenient.last_seq == 38
    assert any("torn last line" in w for w in lenient.warnings)


def test_deleted_rotated_file_in_the_middle(log_path: Path) -> None:
    files = log_files(log_path)
    files[1].unlink()
    bad = verify_files(log_files(log_path)).first_bad
    assert bad is not None and "deleted" in bad.problem


def test_first_record_replaced(log_path: Path) -> None:
    f, _i = locate(log_path, 0)
    lines = lines_of(f)
    rec = json.loads(lines[0])
    assert rec["seq"] == 0
    del lines[0]
    rewrite(f, lines)
    bad = verify_files(log_files(log_path)).first_bad
    # without seq 0 the chain starts later: the head is missing, and that fails
    assert bad is not None and bad.seq == 1 and (bad.file, bad.line) == (str(f), 1)
    assert "head missing: the log starts at seq 1, not 0" in bad.problem


def test_cli_names_the_first_bad_record(log_path: Path) -> None:
    cmd = [sys.executable, "-m", "exogpu", "audit", "verify", str(log_path)]
    ok = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and ok.stdout.startswith("OK (unsealed, hash chain only): ")
    f, i = locate(log_path, 30)
    lines = lines_of(f)
    lines[i] = lines[i].replace('"cpu:0"', '"cpu:1"')
    rewrite(f, lines)
    bad = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert f"FAILED: first bad record at {f}:{i + 1} (seq 30): hash mismatch" in bad.stdout
