"""Guarded sessions on the real devices of this machine: permissions, quotas that
follow real allocations, audit records of every operation."""

from __future__ import annotations

import contextlib
import gc
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import exogpu
from exogpu.security import (
    AccessControl,
    AuditLog,
    PermissionDenied,
    QuotaExceeded,
    Session,
    parse_policy,
)
from exogpu.security.audit import log_files

DEV = exogpu.devices()[0].id

POLICY = f"""
[[principals]]
name = "alice"
roles = ["user"]
devices = ["{DEV}"]
memory_quota_bytes = 1048576

[[principals]]
name = "watcher"
roles = ["monitor"]
devices = ["*"]

[[principals]]
name = "nofree"
roles = ["user"]
devices = ["*"]
deny = ["memory.free", "memory.copy_d2h@{DEV}"]
memory_quota_bytes = 4096

[[principals]]
name = "elsewhere"
roles = ["power_user"]
devices = ["nosuch:*"]
"""


@pytest.fixture
def audit(tmp_path: Path) -> Any:
    log = AuditLog(tmp_path / "audit.log")
    yield log
    log.close()


@pytest.fixture
def access() -> AccessControl:
    return AccessControl(parse_policy(POLICY))


def audit_records(log: AuditLog) -> list[dict[str, Any]]:
    log.flush()
    return [json.loads(x) for f in log_files(log.path) for x in f.read_text().splitlines()]


def test_allocate_copy_free_moves_real_bytes(access: AccessControl, audit: AuditLog) -> None:
    s = Session("alice", access, audit)
    data = np.arange(4096, dtype=np.uint8)
    buf = s.allocate(DEV, 4096)
    other = s.allocate(DEV, 4096)
    assert s.quota_used == 8192
    s.copy(buf, data)                       # h2d
    s.copy(other, buf)                      # d2d
    out = np.zeros(4096, dtype=np.uint8)
    s.copy(out, other, 1000, src_offset=10)  # d2h, part
    assert np.array_equal(out[:1000], data[10:1010]) and not out[1000:].any()
    s.synchronize(DEV)
    buf.free()
    buf.free()  # idempotent
    with other:
        pass
    assert s.quota_used == 0
    types = [r["type"] for r in audit_records(audit) if r["principal"] == "alice"]
    assert types == ["memory.allocate", "memory.allocate", "memory.copy_h2d", "memory.copy_d2d",
                     "memory.copy_d2h", "compute.synchronize", "memory.free", "memory.free"]


def test_denials_are_audited_and_change_nothing(access: AccessControl, audit: AuditLog) -> None:
    w = Session("watcher", access, audit)
    assert [d.id for d in w.devices()] == [d.id for d in exogpu.devices()]
    assert w.memory_info(DEV).total > 0
    assert w.device_info(DEV).id == DEV
    with pytest.raises(PermissionDenied, match=r"may not memory\.allocate on"):
        w.allocate(DEV, 16)
    assert w.quota_used == 0
    e = Session("elsewhere", access, audit)
    assert e.devices() == []  # may list, but no device here matches its patterns
    with pytest.raises(PermissionDenied, match="not granted on this device"):
        e.memory_info(DEV)
    with pytest.raises(PermissionDenied, match="unknown principal"):
        Session("mallory", access, audit).devices()
    denied = [r for r in audit_records(audit) if r["type"] == "security.access_denied"]
    assert [(r["principal"], r["details"]["permission"]) for r in denied] == [
        ("watcher", "memory.allocate"), ("elsewhere", "monitor.memory"),
        ("mallory", "device.list")]
    assert all(r["outcome"] == "denied" and r["severity"] == "warning" for r in denied)


def test_explicit_denials_on_free_and_copy(access: AccessControl, audit: AuditLog) -> None:
    s = Session("nofree", access, audit)
    buf = s.allocate(DEV, 4096)
    s.copy(buf, bytes(4096))
    with pytest.raises(PermissionDenied, match=r"memory\.copy_d2h"):
        s.copy(bytearray(4096), buf)
    with pytest.raises(PermissionDenied, match=r"memory\.free"):
        buf.free()
    assert not buf.freed and s.quota_used == 4096
    del buf
    gc.collect()  # being collected returns the quota even when free is denied
    assert s.quota_used == 0


def test_quota_follows_garbage_collection(access: AccessControl, audit: AuditLog) -> None:
    s = Session("alice", access, audit)
    bufs = [s.allocate(DEV, 262144) for _ in range(4)]
    with pytest.raises(QuotaExceeded, match="1048576 bytes in use"):
        s.allocate(DEV, 1)
    del bufs[:2]
    gc.collect()
    assert s.quota_used == 524288
    keep = s.allocate(DEV, 524288)
    assert s.quota_used == 1048576
    recs = audit_records(audit)
    assert [r["details"].get("reason") for r in recs if r["type"] == "memory.free"] == \
        ["garbage-collected"] * 2
    assert [r["type"] for r in recs].count("security.quota_exceeded") == 1
    del keep, bufs


def test_quota_spans_sessions_of_one_principal(access: AccessControl) -> None:
    a, b = Session("alice", access, None), Session("alice", access, None)
    x = a.allocate(DEV, 1048576)
    with pytest.raises(QuotaExceeded):
        b.allocate(DEV, 1)
    x.free()
    b.allocate(DEV, 1).free()


def test_racing_for_the_last_bytes_only_one_wins(access: AccessControl) -> None:
    for _ in range(20):
        barrier = threading.Barrier(8)
        wins: list[Any] = []
        losses: list[BaseException] = []

        def grab(barrier: threading.Barrier = barrier, wins: list[Any] = wins,
                 losses: list[BaseException] = losses) -> None:
            s = Session("alice", access, None)
            barrier.wait()
            try:
                wins.append(s.allocate(DEV, 1048576))
            except QuotaExceeded as exc:
                losses.append(exc)

        threads = [threading.Thread(target=grab) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 1 and len(losses) == 7
        wins[0].free()
        assert access.ledger("alice").used == 0


def test_threads_never_exceed_quota(access: AccessControl) -> None:
    ledger = access.ledger("alice")
    peak = [0]
    errors: list[BaseException] = []

    def churn(seed: int) -> None:
        rng = np.random.default_rng(seed)
        s = Session("alice", access, None)
        held: list[Any] = []
        try:
            for _ in range(300):
                if held and rng.random() < 0.5:
                    held.pop(int(rng.integers(len(held)))).free()
                else:
                    with contextlib.suppress(QuotaExceeded):
                        held.append(s.allocate(DEV, int(rng.integers(1, 200000))))
                peak[0] = max(peak[0], ledger.used)
                assert ledger.used <= 1048576
            held.clear()  # dropped, not freed: collection returns the quota
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gc.collect()
    assert not errors
    assert 0 < peak[0] <= 1048576
    assert ledger.used == 0


def test_bad_input_and_raw_buffers(access: AccessControl, audit: AuditLog) -> None:
    s = Session("alice", access, audit)
    with pytest.raises(exogpu.InvalidArgument, match="non-negative"):
        s.allocate(DEV, -1)
    with pytest.raises(exogpu.Error):
        s.allocate("nosuch:7", 16)
    raw = exogpu.device(DEV).allocate(16)
    g = s.allocate(DEV, 16)
    with pytest.raises(TypeError, match="GuardedBuffer"):
        s.copy(g, raw)
    with pytest.raises(exogpu.InvalidArgument):
        s.copy(bytearray(4), bytearray(4))
    assert s.quota_used == 16
    raw.free()


def test_failed_core_operation_is_audited(access: AccessControl, audit: AuditLog) -> None:
    s = Session("alice", access, audit)
    buf = s.allocate(DEV, 64)
    with pytest.raises(exogpu.InvalidArgument):
        s.copy(buf, bytes(64), 64, dst_offset=32)  # past the end
    rec = [r for r in audit_records(audit) if r["type"] == "memory.copy_h2d"][-1]
    assert rec["outcome"] == "failure" and "InvalidArgument" in rec["details"]["error"]


def test_authorize_checks_and_audits_outside_operations(access: AccessControl,
                                                       audit: AuditLog) -> None:
    Session("alice", access, audit).authorize("compute.execute", DEV, kernel="fma")
    with pytest.raises(PermissionDenied, match=r"compute\.execute"):
        Session("watcher", access, audit).authorize("compute.execute", DEV)
    recs = [r for r in audit_records(audit) if "compute.execute" in json.dumps(r)]
    assert [(r["type"], r["principal"], r["outcome"]) for r in recs] == [
        ("compute.execute", "alice", "success"),
        ("security.access_denied", "watcher", "denied")]
    assert recs[0]["details"] == {"kernel": "fma"}


@pytest.mark.skipif(len(exogpu.devices()) < 2, reason="needs two devices for a p2p copy")
def test_p2p_needs_permission_on_both_devices(tmp_path: Path) -> None:
    a, b = (d.id for d in exogpu.devices()[:2])
    policy = f"""
[[principals]]
name = "p"
roles = ["power_user"]
devices = ["{a}", "{b}"]
deny = ["memory.copy_p2p@{b}"]
"""
    acl = AccessControl(parse_policy(policy))
    s = Session("p", acl, None)
    x, y = s.allocate(a, 256), s.allocate(b, 256)
    with pytest.raises(PermissionDenied, match=f"memory.copy_p2p on {b}"):
        s.copy(x, y)
    acl.replace_policy(parse_policy(policy.replace("deny", "# deny")))
    s.copy(x, bytes(range(256)))
    s.copy(y, x)
    out = bytearray(256)
    s.copy(out, y)
    assert bytes(out) == bytes(range(256))
