"""Audit log: records, durability modes, rotation, queries, full queues, failures."""

from __future__ import annotations

import errno
import itertools
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import exogpu.security.audit as audit_mod
from exogpu.security.audit import (
    GENESIS,
    AuditLog,
    AuditWriterFailed,
    EventType,
    Severity,
    log_files,
)
from exogpu.security.audit_query import query
from exogpu.security.audit_verify import verify_files


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for f in log_files(path) for line in f.read_text().splitlines()]


def test_event_types_and_severities() -> None:
    assert len(EventType) >= 20
    categories = {e.value.split(".")[0] for e in EventType}
    assert {"device", "memory", "compute", "monitor", "security", "system"} <= categories
    assert [s.label for s in Severity] == ["debug", "info", "warning", "error", "critical"]
    assert Severity.parse("Warning") is Severity.WARNING
    with pytest.raises(ValueError, match="unknown severity 'loud'"):
        Severity.parse("loud")


@pytest.mark.parametrize("durability", ["buffered", "flush", "fsync"])
def test_records_are_chained(tmp_path: Path, durability: Any) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path, durability=durability) as log:
        seqs = [log.log(EventType.MEMORY_ALLOCATE, principal="alice", device="cpu:0",
                        details={"nbytes": i, "note": "ünïcode \"quoted\""}) for i in range(5)]
        log.log(EventType.ACCESS_DENIED, Severity.WARNING, principal="eve", outcome="denied")
    assert seqs == [0, 1, 2, 3, 4]
    recs = records(path)
    assert [r["seq"] for r in recs] == list(range(6))
    assert recs[0]["prev"] == GENESIS
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(recs))
    assert recs[2]["details"] == {"nbytes": 2, "note": "ünïcode \"quoted\""}
    assert recs[5]["type"] == "security.access_denied" and recs[5]["severity"] == "warning"
    assert list(recs[0]) == ["seq", "ts", "type", "severity", "principal", "device", "outcome",
                             "details", "prev", "hash"]
    report = verify_files([path])
    assert report.ok and report.records == 6 and report.warnings == []


def test_bad_input_is_refused_and_nothing_logged(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path) as log:
        with pytest.raises(ValueError):
            log.log("memory.steal")
        with pytest.raises(TypeError, match="JSON-serialisable"):
            log.log(EventType.MEMORY_FREE, details={"obj": object()})
        with pytest.raises(ValueError, match="unknown severity"):
            log.log(EventType.MEMORY_FREE, "verbose")
        assert log.next_seq == 0
    assert path.read_text() == ""
    with pytest.raises(ValueError, match="durability"):
        AuditLog(tmp_path / "x.log", durability="eventually")  # type: ignore[arg-type]


def test_fsync_mode_returns_only_once_on_disk_with_group_commit(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    seen_on_return: list[bool] = []
    with AuditLog(path, durability="fsync") as log:
        def worker(k: int) -> None:
            for i in range(40):
                seq = log.log(EventType.COMPUTE_EXECUTE, principal=f"t{k}", details={"i": i})
                # on return the record is in the file (and was fsynced before log returned)
                assert log._durable_seq >= seq
                seen_on_return.append(True)
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        fsyncs = log.fsyncs
    assert len(seen_on_return) == 320
    assert verify_files([path]).records == 320
    # group commit: threads waiting together shared fsyncs
    assert fsyncs < 320


def test_flush_makes_buffered_records_visible(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path, durability="buffered", flush_interval=60)
    try:
        log.log(EventType.SYSTEM_START)
        log.flush()
        assert len(records(path)) == 1
    finally:
        log.close()


def test_rotation_keeps_chain_and_retention(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path, max_bytes=4096, retention=3) as log:
        for i in range(200):
            log.log(EventType.MEMORY_COPY_H2D, principal="alice", details={"i": i})
    files = log_files(path)
    assert [f.name for f in files] == ["audit.log.3", "audit.log.2", "audit.log.1", "audit.log"]
    assert all(f.stat().st_size <= 4096 for f in files)
    recs = records(path)
    assert recs[-1]["seq"] == 199
    assert [r["seq"] for r in recs] == list(range(recs[0]["seq"], 200))
    # the first record of each file holds the hash of the last of the file before
    ends = [json.loads(f.read_text().splitlines()[-1])["hash"] for f in files[:-1]]
    starts = [json.loads(f.read_text().splitlines()[0])["prev"] for f in files[1:]]
    assert ends == starts
    # any order; the chain verifies up to where retention cut it, and a cut head
    # without a checkpoint to start from is a failure, not a warning
    report = verify_files(list(reversed(files)))
    assert report.first_bad is not None and report.first_bad.seq == recs[0]["seq"] > 0
    assert "head missing" in report.first_bad.problem
    assert report.last_seq == 199 and report.records == len(recs)


def test_reopen_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path, max_bytes=2048) as log:
        for _ in range(30):
            log.log(EventType.DEVICE_LIST)
    with AuditLog(path, max_bytes=2048) as log:
        assert log.next_seq == 30
        log.log(EventType.DEVICE_INFO)
    report = verify_files(log_files(path))
    assert report.ok and report.last_seq == 30


def test_query_filters_and_pages_across_rotation(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path, max_bytes=4096, retention=20) as log:
        for i in range(120):
            log.log(EventType.MEMORY_ALLOCATE if i % 2 else EventType.ACCESS_DENIED,
                    Severity.INFO if i % 2 else Severity.WARNING,
                    principal=["alice", "bob", "carol"][i % 3], details={"i": i})
            if i == 59:
                time.sleep(0.01)
                middle = time.time()
                time.sleep(0.01)
    assert len(log_files(path)) > 3
    everything = records(path)
    assert len(everything) == 120

    page = query([path], principal="alice", limit=1000)
    assert [r["details"]["i"] for r in page.records] == list(range(0, 120, 3))
    assert page.next_after is None
    denied = query([path], event_types=["security.access_denied"], limit=1000).records
    assert [r["details"]["i"] for r in denied] == list(range(0, 120, 2))
    warn = query([path], min_severity="warning", limit=1000).records
    assert warn == denied
    assert query([path], min_severity="error").records == []
    import datetime as dt
    cut = dt.datetime.fromtimestamp(middle, dt.timezone.utc)
    assert [r["details"]["i"] for r in query([path], since=cut, limit=1000).records] == \
        list(range(60, 120))
    assert [r["details"]["i"] for r in query([path], until=cut.isoformat(),
                                             limit=1000).records] == list(range(60))
    # pagination: pages of 7 cover the principal's records exactly once, in order
    got: list[int] = []
    after = None
    while True:
        page = query([path], principal="bob", limit=7, after_seq=after)
        got += [r["details"]["i"] for r in page.records]
        if page.next_after is None:
            break
        after = page.next_after
    assert got == list(range(1, 120, 3))
    with pytest.raises(ValueError, match="limit"):
        query([path], limit=0)


class StalledLog(AuditLog):
    """The real writer, held at the door until `release` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.release = threading.Event()
        super().__init__(*args, **kwargs)

    def _write(self, batch: Any) -> None:
        self.release.wait(30)
        super()._write(batch)


def test_full_queue_drops_are_counted_and_audited(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = StalledLog(path, max_pending=4, on_full="drop")
    try:
        log.log(EventType.SYSTEM_START)
        deadline = time.monotonic() + 5
        while log._pending and time.monotonic() < deadline:
            time.sleep(0.001)  # the writer took the first event and is stalled
        results = [log.log(EventType.MEMORY_FREE, details={"i": i}) for i in range(10)]
        assert results[:4] == [1, 2, 3, 4]
        assert results[4:] == [None] * 6
        assert log.dropped == 6
        log.release.set()
    finally:
        log.close()
    recs = records(path)
    drop = [r for r in recs if r["type"] == "system.audit_dropped"]
    assert len(drop) == 1 and drop[0]["details"]["dropped"] == 6
    assert drop[0]["severity"] == "error"
    assert verify_files([path]).ok


def test_full_queue_blocks_until_room(tmp_path: Path) -> None:
    log = StalledLog(tmp_path / "audit.log", max_pending=2, on_full="block")
    try:
        log.log(EventType.SYSTEM_START)
        while log._pending:
            time.sleep(0.001)
        log.log(EventType.DEVICE_LIST)
        log.log(EventType.DEVICE_LIST)
        done = threading.Event()
        t = threading.Thread(target=lambda: (log.log(EventType.DEVICE_INFO), done.set()))
        t.start()
        assert not done.wait(0.2)  # blocked: the queue is full
        log.release.set()
        assert done.wait(5)
        t.join()
    finally:
        log.close()
    assert log.dropped == 0 and len(records(log.path)) == 4


def test_fsync_failure_is_fatal_and_loud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capfd: pytest.CaptureFixture[str]) -> None:
    log = AuditLog(tmp_path / "audit.log", durability="fsync")
    log.log(EventType.SYSTEM_START)

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(audit_mod.os, "fsync", broken)
    with pytest.raises(AuditWriterFailed, match="Input/output error"):
        log.log(EventType.DEVICE_LIST)
    with pytest.raises(AuditWriterFailed):
        log.log(EventType.DEVICE_LIST)
    assert isinstance(log.failed, OSError)
    with pytest.raises(AuditWriterFailed):
        log.close()
    err = capfd.readouterr().err
    assert "audit writer" in err and "FAILED" in err and "Input/output error" in err


def test_unreadable_tail_refuses_to_continue(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_text("this is not an audit log\n")
    with pytest.raises(audit_mod.AuditError, match="cannot be continued"):
        AuditLog(path)


def test_audit_files_are_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with AuditLog(tmp_path / "audit.log", max_bytes=1024) as log:
            for _ in range(20):
                log.log(EventType.SYSTEM_START)
    finally:
        os.umask(old)
    assert len(log.files()) > 1
    assert all((f.stat().st_mode & 0o777) == 0o600 for f in log.files())
