"""asv benchmarks of the security layer: permission checks, audit logging (against the
standard library's logging with a JSON formatter), guarded allocations (against the
core's own)."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import exogpu
from exogpu.security import AccessControl, AuditLog, EventType, Permission, Session, parse_policy

POLICY = """
[[principals]]
name = "alice"
roles = ["user"]
devices = ["cuda:*", "cpu:*"]
deny = ["memory.copy_p2p"]

[[principals]]
name = "ops"
roles = ["admin"]
devices = ["*"]
"""
CHECKS = [(p, perm, d) for p in ("alice", "ops", "mallory") for perm in Permission
          for d in ("cuda:0", "cpu:0", "vulkan:1")]


class PermissionChecks:
    def setup(self) -> None:
        self.acl = AccessControl(parse_policy(POLICY))
        for args in CHECKS:
            self.acl.allowed(*args)  # fill the cache

    def time_allowed_1008(self) -> None:
        allowed = self.acl.allowed
        for _ in range(8):
            for principal, perm, device in CHECKS:  # 126 checks, 1008 in all
                allowed(principal, perm, device)

    def time_uncached_evaluation_1008(self) -> None:
        policy = self.acl.policy
        for _ in range(8):
            for principal, perm, device in CHECKS:
                entry = policy.principals.get(principal)
                _ = entry is not None and perm in entry.permissions_on((device,))

    def track_checks_per_second(self) -> float:
        from benchmarks.ratio import median_seconds_pair

        ours, _ = median_seconds_pair(self.time_allowed_1008, lambda: None)
        return 1008 / ours

    track_checks_per_second.unit = "checks/s"  # type: ignore[attr-defined]

    def track_ratio_to_uncached(self) -> float:
        from benchmarks.ratio import median_ratio

        return median_ratio(self.time_allowed_1008, self.time_uncached_evaluation_1008)

    track_ratio_to_uncached.unit = "x uncached"  # type: ignore[attr-defined]


class _Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"ts": record.created, "level": record.levelname, "type": record.msg,
                           **getattr(record, "fields", {})}, separators=(",", ":"))


class AuditLogging:
    params: ClassVar[list[str]] = ["buffered", "flush", "fsync"]
    param_names: ClassVar[list[str]] = ["durability"]
    timeout = 120

    def setup(self, durability: Any) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.log = AuditLog(Path(self.dir.name) / "audit.log", durability=durability)
        self.n = 50 if durability == "fsync" else 1000

    def teardown(self, durability: Any) -> None:
        self.log.close()
        self.dir.cleanup()

    def time_log_then_flush(self, durability: Any) -> None:
        for i in range(self.n):
            self.log.log(EventType.MEMORY_ALLOCATE, principal="alice", device="cpu:0",
                         details={"nbytes": 4096, "i": i})
        self.log.flush()


class StdlibJsonLogging:
    """The reference: logging + JSON formatter + FileHandler, 1000 events then flush."""

    def setup(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.logger = logging.getLogger("exogpu.bench.stdlib")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.handler = logging.FileHandler(Path(self.dir.name) / "std.log")
        self.handler.setFormatter(_Json())
        self.logger.addHandler(self.handler)

    def teardown(self) -> None:
        self.logger.removeHandler(self.handler)
        self.handler.close()
        self.dir.cleanup()

    def time_log_then_flush(self) -> None:
        for i in range(1000):
            self.logger.info("memory.allocate", extra={"fields": {
                "principal": "alice", "device": "cpu:0", "details": {"nbytes": 4096, "i": i}}})
        self.handler.flush()


class BufferedAuditVsStdlib:
    """1000 events then flush, single thread: the audit log (hashing, chaining) over
    logging + JSON formatter + FileHandler, interleaved in one run."""

    def setup(self) -> None:
        self.audit = AuditLogging()
        self.audit.setup("buffered")
        self.std = StdlibJsonLogging()
        self.std.setup()

    def teardown(self) -> None:
        self.audit.teardown("buffered")
        self.std.teardown()

    def track_ratio_to_stdlib_logging(self) -> float:
        from benchmarks.ratio import median_ratio

        return median_ratio(lambda: self.audit.time_log_then_flush("buffered"),
                            self.std.time_log_then_flush, repeats=11)

    track_ratio_to_stdlib_logging.unit = "x stdlib logging"  # type: ignore[attr-defined]


class GuardedAllocation:
    """allocate + free of 4 KiB, 100 times: through a Session (checked, quota, audited)
    and straight from the core."""

    def setup(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.log = AuditLog(Path(self.dir.name) / "audit.log")
        self.session = Session("alice", AccessControl(parse_policy(POLICY)), self.log)
        self.device = exogpu.devices()[0]

    def teardown(self) -> None:
        self.log.close()
        self.dir.cleanup()

    def time_session_allocate_free(self) -> None:
        for _ in range(100):
            self.session.allocate(self.device.id, 4096).free()

    def time_core_allocate_free(self) -> None:
        for _ in range(100):
            self.device.allocate(4096).free()
