"""Tamper-evident audit log: JSON lines in a SHA-256 hash chain, written by one thread.

Each line is one record with its fields in a fixed order, the last being `hash`:

    {"seq":7,"ts":"2026-01-02T03:04:05.123456Z","type":"memory.allocate",
     "severity":"info","principal":"alice","device":"cpu:0","outcome":"success",
     "details":{"nbytes":4096},"prev":"<hash of seq 6>","hash":"<sha256>"}

`hash` is the SHA-256 of the line's bytes up to (not including) `,"hash":` followed
by `}`; `prev` is the hash of the record before, across rotated files, and
"0" * 64 for the first record ever. Editing, deleting, reordering or truncating a
record therefore breaks the chain at that record (see `exogpu.security.audit_verify`).

Durability (`durability=`):
  buffered  log() returns at once; the writer flushes to the OS every `flush_interval`.
  flush     log() returns once the record is written to the OS (survives a crash of
            this process, not of the machine).
  fsync     log() returns once the record is on disk (fsync). Many threads waiting
            together share one fsync (group commit).

A full queue (`max_pending`) either blocks the caller (`on_full="block"`) or drops
the event (`on_full="drop"`); drops are counted and logged as a `system.audit_dropped`
record, never silent. Any write/flush/fsync failure is fatal to the writer: it is
logged at CRITICAL, printed to stderr, and every later log() raises AuditWriterFailed.

A torn last line (a write interrupted by a crash; only ever after the last record
whose log() returned in flush/fsync mode) is cut off when the log is reopened, and
the cut is itself audited (`system.audit_recovered`).

Sealing (`seal_key=` the host's state file from `exogpu audit keygen`): the hash
chain alone stops no one who can write the file, since edits can be rechained. A
sealed log also gets signed checkpoints (`system.audit_seal`, see
`exogpu.security.audit_seal`) every `seal_records` records or `seal_seconds`
seconds, after a rotation and at close, with a signing key that evolves at each
one. Records after the last checkpoint are unsealed until the next.

Reopening a log reads its last lines as outside input (`audit_records`): a line
too deep, too large or with numbers out of bounds is an AuditError naming the
file, line and field, and nothing is written. So is a sealed log that no longer
holds the checkpoint the key state last wrote (truncated, wiped or replaced):
the writer refuses to continue a chain it cannot vouch for, rather than moving
the file aside and starting over, which would hide the damage. Move the file
aside yourself once `exogpu audit verify` has named it.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from enum import Enum, IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

if TYPE_CHECKING:
    from exogpu.security.audit_seal import SealState

__all__ = [
    "GENESIS",
    "AuditError",
    "AuditLog",
    "AuditWriterFailed",
    "EventType",
    "Severity",
    "format_ts",
    "log_files",
]

GENESIS = "0" * 64
HASH_MARK = b',"hash":"'
# Well under the 1 MiB a reader accepts for a line (UTF-8 may take 4 bytes a character).
MAX_RECORD_CHARS = 128 << 10
_SEAL = "system.audit_seal"
_log = logging.getLogger("exogpu.audit")

Durability = Literal["buffered", "flush", "fsync"]
OnFull = Literal["block", "drop"]


class Severity(IntEnum):
    DEBUG = 10
    INFO = 20
    WARNING = 30
    ERROR = 40
    CRITICAL = 50

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str | int | Severity) -> Severity:
        if isinstance(value, Severity):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[value.upper()]
        except KeyError:
            raise ValueError(
                f"unknown severity {value!r} (known: {', '.join(s.label for s in cls)})"
            ) from None


class EventType(str, Enum):
    # device
    DEVICE_LIST = "device.list"
    DEVICE_INFO = "device.info"
    # memory
    MEMORY_ALLOCATE = "memory.allocate"
    MEMORY_FREE = "memory.free"
    MEMORY_COPY_H2D = "memory.copy_h2d"
    MEMORY_COPY_D2H = "memory.copy_d2h"
    MEMORY_COPY_D2D = "memory.copy_d2d"
    MEMORY_COPY_P2P = "memory.copy_p2p"
    # compute
    COMPUTE_EXECUTE = "compute.execute"
    COMPUTE_SYNCHRONIZE = "compute.synchronize"
    # monitoring
    MONITOR_MEMORY = "monitor.memory"
    MONITOR_THERMAL = "monitor.thermal"
    MONITOR_POWER = "monitor.power"
    # security
    AUTH_SUCCESS = "security.auth_success"
    AUTH_FAILURE = "security.auth_failure"
    ACCESS_DENIED = "security.access_denied"
    QUOTA_EXCEEDED = "security.quota_exceeded"
    POLICY_CHANGED = "security.policy_changed"
    POLICY_REJECTED = "security.policy_rejected"
    CERT_ROTATED = "security.cert_rotated"
    CERT_EXPIRING = "security.cert_expiring"
    # system
    SYSTEM_START = "system.start"
    SYSTEM_STOP = "system.stop"
    API_REQUEST = "system.api_request"
    AUDIT_DROPPED = "system.audit_dropped"
    AUDIT_RECOVERED = "system.audit_recovered"
    AUDIT_SEAL = "system.audit_seal"

    def __str__(self) -> str:
        return self.value


class AuditError(RuntimeError):
    pass


class AuditWriterFailed(AuditError):
    """The writer hit an I/O error; the log accepts nothing more."""


_ts_cache: tuple[int, str] = (-1, "")


def format_ts(t: float) -> str:
    """UTC, microseconds, fixed width: ISO strings of records compare like times."""
    global _ts_cache
    whole = int(t)
    usec = round((t - whole) * 1e6)
    if usec >= 1_000_000:
        whole, usec = whole + 1, usec - 1_000_000
    cached_second, prefix = _ts_cache
    if cached_second != whole:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _ts_cache = (whole, prefix)
    return f"{prefix}.{usec:06d}Z"


def log_files(path: str | os.PathLike[str]) -> list[Path]:
    """The active file and its rotated predecessors, oldest first (PATH.N ... PATH.1, PATH)."""
    path = Path(path)
    rotated: list[tuple[int, Path]] = []
    for p in path.parent.glob(path.name + ".*"):
        suffix = p.name[len(path.name) + 1 :]
        if suffix.isdigit():
            rotated.append((int(suffix), p))
    files = [p for _, p in sorted(rotated, reverse=True)]
    if path.exists():
        files.append(path)
    return files


# One encoder, built once: json.dumps with options builds a new encoder per call.
_encode = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
).encode
_encode_str: Callable[[str], str] = json.encoder.encode_basestring
_SEVERITY_LABELS: dict[object, str] = {s: s.label for s in Severity}
_SEVERITY_LABELS.update({int(s): s.label for s in Severity})


def _dumps(value: Any) -> str:
    return _encode(value)


# queued event: seq, time, type, severity label, principal json, device json,
# outcome json, details json
_Pending = tuple[int, float, str, str, str, str, str, str]


def _line_count(path: Path, size: int) -> int:
    """Lines in the first `size` bytes of a file (to name a line in an error)."""
    count = 0
    with open(path, "rb") as f:
        while size > 0:
            chunk = f.read(min(size, 1 << 20))
            if not chunk:
                break
            count += chunk.count(b"\n")
            size -= len(chunk)
    return count


def _find_line(files: list[Path], seq: int) -> tuple[str, bytes] | None:
    """Where record `seq` is (file:line) and its bytes, newest files first."""
    mark = b'{"seq":%d,' % seq
    for path in reversed(files):
        data = path.read_bytes()
        at = 0 if data.startswith(mark) else data.find(b"\n" + mark) + 1
        if at == 0 and not data.startswith(mark):
            continue
        end = data.find(b"\n", at)
        line_no = data.count(b"\n", 0, at) + 1
        return f"{path}:{line_no}", data[at : end if end >= 0 else len(data)]
    return None


def _first_seq_present(path: Path) -> int:
    """The seq the oldest file starts with, or -1."""
    files = log_files(path)
    for f in files:
        with open(f, "rb") as fh:
            head = fh.readline(64)
        if head.startswith(b'{"seq":'):
            digits = head[7:].split(b",", 1)[0]
            if digits.isdigit() and len(digits) < 20:
                return int(digits)
        return -1
    return -1


def _read_tail(path: Path, limit: int = 1 << 20) -> tuple[bytes, int]:
    """The end of a file (up to `limit` bytes) and the file's size."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        start = max(0, size - limit)
        f.seek(start)
        return f.read(), size


class AuditLog:
    """An append-only audit log with a background writer; thread-safe."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "buffered",
        max_bytes: int = 64 << 20,
        retention: int = 10,
        flush_interval: float = 0.5,
        max_pending: int = 65536,
        on_full: OnFull = "block",
        seal_key: str | os.PathLike[str] | None = None,
        seal_records: int = 10000,
        seal_seconds: float = 10.0,
        on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
        checkpoint_export: str | os.PathLike[str] | None = None,
    ) -> None:
        if durability not in ("buffered", "flush", "fsync"):
            raise ValueError(f"durability must be buffered, flush or fsync, not {durability!r}")
        if on_full not in ("block", "drop"):
            raise ValueError(f"on_full must be block or drop, not {on_full!r}")
        if max_bytes < 1024 or retention < 0 or max_pending < 1 or flush_interval <= 0:
            raise ValueError(
                "max_bytes >= 1024, retention >= 0, max_pending >= 1 and "
                "flush_interval > 0 are required"
            )
        if seal_records < 1 or not seal_seconds > 0:
            raise ValueError("seal_records >= 1 and seal_seconds > 0 are required")
        self.path = Path(path)
        self.durability = durability
        self.max_bytes = max_bytes
        self.retention = retention
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self.on_full = on_full

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # writer: work to do
        self._done = threading.Condition(self._lock)  # callers: progress made
        self._not_full = threading.Condition(self._lock)  # blocked callers: room
        self._pending: deque[_Pending] = deque()
        self._dropped_unlogged = 0
        self.dropped = 0
        self.written = 0
        self.fsyncs = 0
        self._flush_requested = 0
        self._closing = False
        self._closed = False
        self._failed: BaseException | None = None
        self._written_seq = -1  # written to the OS (flushed)
        self._durable_seq = -1  # fsynced

        self.seal_records = seal_records
        self.seal_seconds = seal_seconds
        self._on_checkpoint = on_checkpoint
        self._checkpoint_export = Path(checkpoint_export) if checkpoint_export else None
        self._sealer: SealState | None = None
        self._since_slot = 0  # records queued since the last checkpoint was queued (lock)
        self._last_seal = time.monotonic()
        self._rotated = False  # a rotation since the last checkpoint
        self.checkpoints = 0
        self.last_checkpoint: dict[str, Any] | None = None
        if seal_key is not None:
            from exogpu.security.audit_seal import SealState

            self._sealer = SealState.load(seal_key)

        self.path.parent.mkdir(parents=True, exist_ok=True)
        recovered = self._recover()
        resealed = self._reconcile_seal() if self._sealer is not None else None
        self._file = self._open()
        self._size = self._file.tell()
        self._upto = self._written_seq = self._durable_seq = self._next_seq - 1
        self._thread = threading.Thread(target=self._run, name="exogpu-audit-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)
        if recovered or resealed:
            details: dict[str, Any] = {"file": str(self.path), "torn_bytes_removed": recovered}
            if resealed:
                details["checkpoint_restored_seq"] = resealed
            self.log(
                EventType.AUDIT_RECOVERED,
                Severity.WARNING,
                outcome="recovered",
                details=details,
            )

    def _open(self) -> BinaryIO:
        """Append, created readable by the owner only: records name who did what."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return os.fdopen(fd, "ab", buffering=1 << 20)

    # -- recovery ------------------------------------------------------------------------
    def _recover(self) -> int:
        """Find where the chain ends; cut a torn last line. Returns bytes cut."""
        from exogpu.security.audit_records import MAX_LINE_BYTES, parse_record

        self._next_seq, self._prev = 0, GENESIS
        cut = 0
        for candidate in reversed(log_files(self.path)):
            tail, size = _read_tail(candidate, MAX_LINE_BYTES + 1)
            if candidate == self.path and tail and not tail.endswith(b"\n"):
                keep = tail.rfind(b"\n") + 1
                cut = len(tail) - keep
                if keep == 0 and size > len(tail):
                    raise AuditError(f"{candidate}: last line longer than 1 MiB; not an audit log")
                with open(candidate, "r+b") as f:
                    f.truncate(size - cut)
                    os.fsync(f.fileno())
                size -= cut
                tail = tail[:keep]
            lines = tail.splitlines()
            if not lines:
                continue
            if len(lines) == 1 and size > len(tail):
                raise AuditError(f"{candidate}: last line longer than 1 MiB; not an audit log")
            where = f"{candidate}:{_line_count(candidate, size)}"
            problem = None
            try:
                record = parse_record(lines[-1], where)
            except AuditError as exc:
                record, problem = {}, str(exc).removeprefix(where + ": ")
            seq, digest = record.get("seq"), record.get("hash")
            if problem is not None:
                pass
            elif not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
                problem = "field seq is not a sequence number"
            elif not (isinstance(digest, str) and len(digest) == 64):
                problem = "field hash is not a SHA-256 hash"
            if problem is not None:
                raise AuditError(
                    f"{where}: {problem}; the chain cannot be continued. Run "
                    "`exogpu audit verify` on the log."
                )
            assert isinstance(seq, int) and isinstance(digest, str)
            self._next_seq, self._prev = seq + 1, digest
            break
        return cut

    def _reconcile_seal(self) -> int | None:
        """Check that the log still holds the checkpoint the key state last wrote, and
        restore it when a crash came between the two. Returns the restored seq, if any."""
        from exogpu.security.audit_seal import export_checkpoint

        assert self._sealer is not None
        last = self._sealer.last
        if last is None:  # a new key: its first checkpoint covers whatever is there
            self._since_slot = self._next_seq
            return None
        self.last_checkpoint = export_checkpoint(last)
        end = self._next_seq - 1
        if end == last.seq - 1 and self._prev == last.prev:
            # The state was advanced but the checkpoint line did not reach the file.
            with open(self.path, "ab") as f:
                f.write(last.line.encode() + b"\n")
                f.flush()
                os.fsync(f.fileno())
            self._next_seq, self._prev = last.seq + 1, last.hash
            return last.seq
        found = _find_line(log_files(self.path), last.seq) if end >= last.seq else None
        if found is not None and found[1] == last.line.encode():
            self._since_slot = end - last.seq
            return None
        if found is None and end >= last.seq and _first_seq_present(self.path) > last.seq:
            # Rotated away with its file (retention); the later chain is the verifier's.
            self._since_slot = end - last.seq
            return None
        if found is not None:
            why = f"holds a different record at seq {last.seq} ({found[0]})"
        elif end < last.seq:
            why = f"ends at seq {end}" if end >= 0 else "is empty"
        else:
            why = f"has no record seq {last.seq}"
        raise AuditError(
            f"{self.path}: the sealing key {self._sealer.path} last wrote checkpoint epoch "
            f"{last.epoch} at seq {last.seq}, but the log {why}: it was truncated, wiped or "
            "replaced. Not continuing a chain that cannot be vouched for: run `exogpu audit "
            "verify --key` on it, then move it aside and start a new log with a new key "
            "(`exogpu audit keygen`)."
        )

    # -- producers -----------------------------------------------------------------------
    def log(
        self,
        event_type: EventType | str,
        severity: Severity | str | int = Severity.INFO,
        *,
        principal: str | None = None,
        device: str | None = None,
        outcome: str = "success",
        details: Mapping[str, Any] | None = None,
    ) -> int | None:
        """Queue one event; returns its sequence number, or None when dropped (full
        queue, `on_full="drop"`). In flush/fsync mode returns once it is written/on disk."""
        etype = (
            event_type.value if isinstance(event_type, EventType) else EventType(event_type).value
        )
        if etype == _SEAL:
            raise ValueError("checkpoints are written by the log itself, not through log()")
        sev = _SEVERITY_LABELS.get(severity) if not isinstance(severity, str) else None
        if sev is None:
            sev = Severity.parse(severity).label
        try:
            encoded = _encode(details) if details else "{}"
        except (TypeError, ValueError) as exc:
            raise TypeError(f"audit details must be JSON-serialisable: {exc}") from exc
        p_json = "null" if principal is None else _encode_str(principal)
        d_json = "null" if device is None else _encode_str(device)
        o_json = _encode_str(outcome)
        if len(encoded) + len(p_json) + len(d_json) + len(o_json) > MAX_RECORD_CHARS:
            raise ValueError(
                f"audit record too large (more than {MAX_RECORD_CHARS} characters of "
                "details, principal, device and outcome)"
            )
        with self._lock:
            while True:
                if self._failed is not None:
                    raise AuditWriterFailed(f"audit writer failed: {self._failed}")
                if self._closing:
                    raise AuditError("audit log is closed")
                if len(self._pending) < self.max_pending:
                    break
                if self.on_full == "drop":
                    self.dropped += 1
                    self._dropped_unlogged += 1
                    return None
                self._not_full.wait()
            seq = self._next_seq
            self._next_seq += 1
            self._pending.append((seq, time.time(), etype, sev, p_json, d_json, o_json, encoded))
            if self._sealer is not None:
                # Every seal_records records a checkpoint takes the next place in the
                # sequence, so it lands there however the writer batches.
                self._since_slot += 1
                if self._since_slot >= self.seal_records:
                    self._pending.append(self._seal_entry("records"))
            if len(self._pending) == 1:
                self._wake.notify()
            if self.durability == "buffered":
                return seq
            self._await(seq, self.durability == "fsync")
            return seq

    def _await(self, seq: int, durable: bool) -> None:
        """Wait (lock held) until `seq` is written (or durable)."""
        while (self._durable_seq if durable else self._written_seq) < seq:
            if self._failed is not None:
                raise AuditWriterFailed(
                    f"audit writer failed before seq {seq} was written: {self._failed}"
                )
            self._done.wait()

    def flush(self) -> None:
        """Return once every event logged before the call is written to the OS (and on
        disk in fsync mode)."""
        with self._lock:
            if self._closed:
                return
            target = self._next_seq - 1
            self._flush_requested += 1
            self._wake.notify()
            self._await(target, self.durability == "fsync")

    def close(self) -> None:
        """Write and fsync everything queued, then stop the writer. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closing = True
            self._wake.notify()
            self._not_full.notify_all()
        self._thread.join()
        atexit.unregister(self.close)
        with self._lock:
            self._closed = True
        if self._failed is not None:
            raise AuditWriterFailed(f"audit writer failed: {self._failed}")

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def failed(self) -> BaseException | None:
        return self._failed

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def files(self) -> list[Path]:
        return log_files(self.path)

    # -- the writer ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        message = f"exogpu audit writer for {self.path} FAILED, no further events accepted: {exc!r}"
        _log.critical(message)
        print(message, file=sys.stderr, flush=True)
        with self._lock:
            self._failed = exc
            self._done.notify_all()
            self._not_full.notify_all()
        with contextlib.suppress(OSError):
            self._file.close()

    def _loop(self) -> None:
        last_flush = time.monotonic()
        synced_upto = self._upto
        while True:
            with self._lock:
                if (
                    not self._pending
                    and not self._closing
                    and not self._flush_requested
                    and not self._dropped_unlogged
                ):
                    self._wake.wait(self.flush_interval)
                batch = list(self._pending)
                self._pending.clear()
                if self._dropped_unlogged:
                    batch.append(self._drop_record())
                flush_requested = self._flush_requested
                self._flush_requested = 0
                closing = self._closing
                if batch:
                    self._not_full.notify_all()
                if self._sealer is not None:
                    reason = self._seal_reason(closing)
                    if reason is not None:
                        batch.append(self._seal_entry(reason))
            if batch:
                self._write(batch)
            now = time.monotonic()
            periodic = now - last_flush >= self.flush_interval
            if closing or flush_requested or (batch and self.durability != "buffered") or periodic:
                self._file.flush()
                last_flush = now
                upto = self._upto
                if (self.durability == "fsync" or closing) and upto > synced_upto:
                    os.fsync(self._file.fileno())
                    self.fsyncs += 1
                    synced_upto = upto
                with self._lock:
                    self._written_seq = upto
                    self._durable_seq = synced_upto
                    self._done.notify_all()
            if closing:
                with self._lock:
                    if self._pending or self._dropped_unlogged:
                        continue
                self._file.close()
                return

    def _seal_reason(self, closing: bool) -> str | None:
        """Why a checkpoint is due after this batch, or None (writer, lock held)."""
        if self._since_slot == 0:
            return None  # nothing since the last checkpoint (or the one queued)
        if closing:
            return "close"
        if self._rotated:
            return "rotate"
        if time.monotonic() - self._last_seal >= self.seal_seconds:
            return "interval"
        return None

    def _seal_entry(self, reason: str) -> _Pending:
        """A place in the sequence for a checkpoint; signed when written (lock held)."""
        seq = self._next_seq
        self._next_seq += 1
        self._since_slot = 0
        return (seq, time.time(), _SEAL, "info", "null", "null", '"sealed"', reason)

    def _seal_line(self, seq: int, t: float, prev: str, reason: str) -> tuple[bytes, str]:
        """Sign checkpoint `seq` over the chain up to `prev` and advance the key.

        The records before it are on disk already; the key state (holding this
        line) is durable before the line is written, so a crash never leaves a
        checkpoint in the log whose next key is lost."""
        from exogpu.security.audit_seal import Checkpoint, export_checkpoint

        sealer = self._sealer
        assert sealer is not None
        details, ts_text, following = sealer.sign_next(seq, t, prev, reason)
        body = (
            f'{{"seq":{seq},"ts":"{ts_text}","type":"{_SEAL}","severity":"info",'
            f'"principal":null,"device":null,"outcome":"sealed",'
            f'"details":{_encode(details)},"prev":"{prev}"'
        ).encode()
        digest = hashlib.sha256(body + b"}").hexdigest()
        line = body + HASH_MARK + digest.encode() + b'"}'
        checkpoint = Checkpoint(seq=seq, ts=ts_text, prev=prev, hash=digest,
                                line=line.decode(), **details)
        sealer.advance(following, checkpoint.line, checkpoint)
        self._last_seal = time.monotonic()
        self.checkpoints += 1
        exported = export_checkpoint(checkpoint)
        self.last_checkpoint = exported
        self._export(exported)
        return line + b"\n", digest

    def _export(self, exported: dict[str, Any]) -> None:
        """Hand a new checkpoint on; a failure here is reported, never fatal to the log."""
        if self._checkpoint_export is not None:
            target = self._checkpoint_export
            tmp = target.with_name(target.name + ".new")
            try:
                tmp.write_text(json.dumps(exported, indent=1) + "\n")
                os.replace(tmp, target)
            except OSError as exc:
                _log.error("audit checkpoint export to %s failed: %s", target, exc)
        if self._on_checkpoint is not None:
            try:
                self._on_checkpoint(exported)
            except Exception:
                _log.exception("audit on_checkpoint callback failed")

    def export_checkpoint(self) -> dict[str, Any] | None:
        """The latest checkpoint as a document to ship off the host (None: unsealed, or
        none yet). `exogpu audit verify --from FILE` starts from such a document."""
        with self._lock:
            return self.last_checkpoint

    @property
    def sealed(self) -> bool:
        return self._sealer is not None

    def _drop_record(self) -> _Pending:
        """A record of events dropped since the last one (lock held)."""
        count, self._dropped_unlogged = self._dropped_unlogged, 0
        seq = self._next_seq
        self._next_seq += 1
        self._since_slot += 1
        details = _dumps(
            {"dropped": count, "dropped_total": self.dropped, "max_pending": self.max_pending}
        )
        return (
            seq,
            time.time(),
            EventType.AUDIT_DROPPED.value,
            Severity.ERROR.label,
            "null",
            "null",
            '"dropped"',
            details,
        )

    def _write(self, batch: list[_Pending]) -> None:
        chunks: list[bytes] = []
        size = self._size
        prev = self._prev
        sha = hashlib.sha256
        for seq, t, etype, sev, principal, device, outcome, details in batch:
            if etype == _SEAL:
                self._file.write(b"".join(chunks))
                chunks.clear()
                self._file.flush()
                os.fsync(self._file.fileno())
                self.fsyncs += 1
                line, digest = self._seal_line(seq, t, prev, details)
            else:
                body = (
                    f'{{"seq":{seq},"ts":"{format_ts(t)}","type":"{etype}","severity":"{sev}",'
                    f'"principal":{principal},"device":{device},"outcome":{outcome},'
                    f'"details":{details},"prev":"{prev}"'
                ).encode()
                digest = sha(body + b"}").hexdigest()
                line = body + HASH_MARK + digest.encode() + b'"}\n'
            if size and size + len(line) > self.max_bytes:
                self._file.write(b"".join(chunks))
                chunks.clear()
                self._rotate()
                size = 0
            if etype == _SEAL:
                self._rotated = False
            chunks.append(line)
            size += len(line)
            prev = digest
        self._file.write(b"".join(chunks))
        self._size = size
        self._prev = prev
        self.written += len(batch)
        self._upto = batch[-1][0]

    def _rotate(self) -> None:
        """PATH -> PATH.1 -> PATH.2 ...; PATH.(retention+1) and older are deleted."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        for old in log_files(self.path)[:-1]:
            n = int(old.name.rsplit(".", 1)[1])
            if n >= self.retention:
                old.unlink()
        for n in range(self.retention - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{n}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{n + 1}"))
        if self.retention > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        self._file = self._open()
        self._rotated = True
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
