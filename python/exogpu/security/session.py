"""Guarded sessions: the core's device operations, checked and audited per principal.

Every operation resolves the device (any id or alias), checks the principal's
permission on it (and, for allocations, the principal's memory quota, which spans
devices), runs the operation and writes an audit record. A denial is audited and
raised as `PermissionDenied` (or `QuotaExceeded`), with nothing changed.

Memory never passes from one principal to another. A new allocation is zeroed
before the principal sees it (the pool may hand back a block another principal
freed). A buffer is used only by sessions of the principal that allocated it. A
`GuardedBuffer` exports (DLPack) only through its own `__dlpack__`, which needs
memory.copy_d2h and memory.copy_h2d on the device (a view reads and writes) and
is audited: the core buffer under it refuses every other export (it is
restricted with a key only the GuardedBuffer holds). An exported view keeps its
memory alive in the core, so `free()` returns the quota at once while the pool
gets the block back only when the last view is gone. (Code running in the same
Python process is one trust domain: these guards stop misuse through the API;
remote principals reach memory only through the agent.)

Quota usage follows the real allocations: it is returned when a buffer is freed
or when the core buffer is garbage-collected (a `weakref.finalize` on it). That
finalizer may run inside any allocation of any thread, so it takes no lock that a
caller could be holding: the ledger lock is re-entrant and the audit record of a
collected buffer goes through a `queue.SimpleQueue` (whose `put` is re-entrant) and
is written by the session's next operation.
"""

from __future__ import annotations

import queue
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from exogpu.security.audit import AuditLog, EventType, Severity
from exogpu.security.rbac import (
    AccessControl,
    Permission,
    PermissionDenied,
    QuotaExceeded,
    QuotaLedger,
)

if TYPE_CHECKING:
    import exogpu

__all__ = ["GuardedBuffer", "Session"]

T = TypeVar("T")


@dataclass(frozen=True)
class _Dev:
    device: exogpu.Device
    id: str
    aliases: tuple[str, ...]


def _export(buffer: GuardedBuffer, kwargs: dict[str, Any]) -> object:
    core: Any = buffer._buf  # the stubs leave out the core's private hooks
    return core._export_dlpack(buffer._key, **kwargs)


def _copy_perm(dst: GuardedBuffer, src: GuardedBuffer) -> Permission:
    if dst.device_id == src.device_id:
        return Permission.MEMORY_COPY_D2D
    return Permission.MEMORY_COPY_P2P


def _release_collected(
    ledger: QuotaLedger, nbytes: int, device_id: str, collected: queue.SimpleQueue[tuple[str, int]]
) -> None:
    ledger.release(nbytes)
    collected.put((device_id, nbytes))


class GuardedBuffer:
    """A buffer allocated through a Session; its bytes count against the quota until
    `free()` or until it is garbage-collected. It exports (DLPack) only through its
    own permission-checked, audited `__dlpack__`."""

    __slots__ = (
        "__weakref__",
        "_buf",
        "_finalizer",
        "_key",
        "_session",
        "device_id",
        "nbytes",
        "principal",
    )

    def __init__(
        self,
        session: Session,
        buf: exogpu.Buffer,
        device_id: str,
        finalizer: weakref.finalize[Any, Any],
    ):
        self._session = session
        self._buf = buf
        self._finalizer = finalizer
        # The core buffer exports only with this key from now on; a plain object,
        # so that the core buffer holding it makes no reference cycle.
        self._key = object()
        restricted: Any = buf  # the stubs leave out the core's private hooks
        restricted._restrict_exports(self._key)
        self.device_id = device_id
        self.principal = session.principal
        self.nbytes: int = buf.nbytes

    @property
    def freed(self) -> bool:
        return bool(self._buf.freed)

    def __dlpack__(self, **kwargs: Any) -> object:
        """A zero-copy view for a DLPack consumer (numpy, torch, CuPy), needing
        memory.copy_d2h and memory.copy_h2d on the device; audited."""
        return self._session.export_dlpack(self, **kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        return self._buf.__dlpack_device__()

    def free(self) -> None:
        self._session.free(self)

    def copy_from(self, src: Any, **kwargs: Any) -> None:
        self._session.copy(self, src, **kwargs)

    def copy_to(self, dst: Any, **kwargs: Any) -> None:
        self._session.copy(dst, self, **kwargs)

    def __enter__(self) -> GuardedBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.free()

    def __repr__(self) -> str:
        state = "freed" if self.freed else f"{self.nbytes} bytes"
        return f"<GuardedBuffer {self.device_id} {state}>"


class Session:
    """Device operations on behalf of `principal`, under `access`, recorded in `audit`."""

    def __init__(self, principal: str, access: AccessControl, audit: AuditLog | None = None):
        import exogpu  # the core is needed only once a session exists

        self._exogpu = exogpu
        self.principal = principal
        self.access = access
        self.audit = audit
        self.ledger = access.ledger(principal)
        self._devices: dict[str, _Dev] = {}
        self._collected: queue.SimpleQueue[tuple[str, int]] = queue.SimpleQueue()

    # -- plumbing ------------------------------------------------------------------------
    def _dev(self, device: str | exogpu.Device) -> _Dev:
        key = device if isinstance(device, str) else device.id
        found = self._devices.get(key)
        if found is None:
            dev = self._exogpu.device(key) if isinstance(device, str) else device
            found = _Dev(dev, dev.id, tuple(a for a in dev.info.aliases if a != dev.id))
            self._devices[key] = found
        return found

    def _record(
        self,
        event: EventType,
        device: str | None,
        outcome: str = "success",
        severity: Severity = Severity.INFO,
        **details: Any,
    ) -> None:
        if self.audit is None:
            return
        while True:
            try:
                dev_id, nbytes = self._collected.get_nowait()
            except queue.Empty:
                break
            self.audit.log(
                EventType.MEMORY_FREE,
                principal=self.principal,
                device=dev_id,
                details={"nbytes": nbytes, "reason": "garbage-collected"},
            )
        self.audit.log(
            event,
            severity,
            principal=self.principal,
            device=device,
            outcome=outcome,
            details=details,
        )

    def _own(self, buffer: GuardedBuffer, permission: Permission) -> _Dev:
        """The buffer's device, once the buffer is known to be this principal's."""
        dev = self._dev(buffer.device_id)
        if buffer.principal == self.principal:
            return dev
        reason = f"the buffer belongs to {buffer.principal!r}"
        self._record(
            EventType.ACCESS_DENIED,
            dev.id,
            "denied",
            Severity.WARNING,
            permission=permission.value,
            reason=reason,
        )
        raise PermissionDenied(self.principal, permission, dev.id, reason)

    def _require(self, permission: Permission, dev: _Dev | None) -> None:
        device = dev.id if dev is not None else None
        aliases = dev.aliases if dev is not None else ()
        if self.access.allowed(self.principal, permission, device, aliases):
            return
        reason = self.access.explain(self.principal, permission, device, aliases)
        self._record(
            EventType.ACCESS_DENIED,
            device,
            "denied",
            Severity.WARNING,
            permission=permission.value,
            reason=reason,
        )
        raise PermissionDenied(self.principal, permission, device, reason)

    def _run(self, event: EventType, dev: _Dev | None, op: Callable[[], T], **details: Any) -> T:
        """Run an allowed operation and audit its outcome (a failure too)."""
        device = dev.id if dev is not None else None
        try:
            result = op()
        except Exception as exc:
            self._record(
                event,
                device,
                "failure",
                Severity.ERROR,
                error=f"{type(exc).__name__}: {exc}",
                **details,
            )
            raise
        self._record(event, device, **details)
        return result

    def authorize(
        self, permission: Permission | str, device: str | None = None, **details: Any
    ) -> None:
        """Check and audit an operation done elsewhere (a probe, a monitor reading)."""
        perm = Permission(permission)
        dev = self._dev(device) if device is not None else None
        self._require(perm, dev)
        self._record(EventType(perm.value), dev.id if dev else None, **details)

    # -- devices -------------------------------------------------------------------------
    def devices(self) -> list[exogpu.Device]:
        """The devices this principal may list (device.list on each)."""
        self._require(Permission.DEVICE_LIST, None)
        visible = []
        for d in self._exogpu.devices():
            dev = self._dev(d)
            if self.access.allowed(self.principal, Permission.DEVICE_LIST, dev.id, dev.aliases):
                visible.append(d)
        self._record(EventType.DEVICE_LIST, None, count=len(visible))
        return visible

    def device_info(self, device: str | exogpu.Device) -> exogpu.DeviceInfo:
        dev = self._dev(device)
        self._require(Permission.DEVICE_INFO, dev)
        return self._run(EventType.DEVICE_INFO, dev, lambda: dev.device.info)

    def memory_info(self, device: str | exogpu.Device) -> exogpu.MemoryInfo:
        dev = self._dev(device)
        self._require(Permission.MONITOR_MEMORY, dev)
        return self._run(EventType.MONITOR_MEMORY, dev, dev.device.memory_info)

    def synchronize(self, device: str | exogpu.Device) -> None:
        dev = self._dev(device)
        self._require(Permission.COMPUTE_SYNCHRONIZE, dev)
        self._run(EventType.COMPUTE_SYNCHRONIZE, dev, dev.device.synchronize)

    # -- memory --------------------------------------------------------------------------
    @property
    def quota_used(self) -> int:
        return self.ledger.used

    @property
    def quota_limit(self) -> int | None:
        return self.ledger.limit

    def allocate(self, device: str | exogpu.Device, nbytes: int) -> GuardedBuffer:
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
            raise self._exogpu.InvalidArgument(
                f"allocate: nbytes must be a non-negative integer, got {nbytes!r}"
            )
        dev = self._dev(device)
        self._require(Permission.MEMORY_ALLOCATE, dev)
        try:
            self.ledger.reserve(nbytes)
        except QuotaExceeded as exc:
            self._record(
                EventType.QUOTA_EXCEEDED,
                dev.id,
                "denied",
                Severity.WARNING,
                requested=nbytes,
                used=exc.used,
                limit=exc.limit,
            )
            raise

        def op() -> exogpu.Buffer:
            buf = dev.device.allocate(nbytes)
            if nbytes:
                # The pool may hand back a block another principal freed: its bytes
                # must not reach this one.
                buf.fill(0)
            return buf

        try:
            buf = self._run(EventType.MEMORY_ALLOCATE, dev, op, nbytes=nbytes)
        except BaseException:
            self.ledger.release(nbytes)
            raise
        fin = weakref.finalize(
            buf, _release_collected, self.ledger, nbytes, dev.id, self._collected
        )
        return GuardedBuffer(self, buf, dev.id, fin)

    def free(self, buffer: GuardedBuffer) -> None:
        """Free now and return the quota; freeing twice does nothing."""
        dev = self._own(buffer, Permission.MEMORY_FREE)
        if buffer.freed or not buffer._finalizer.alive:
            return
        self._require(Permission.MEMORY_FREE, dev)

        def op() -> None:
            buffer._buf.free()
            buffer._finalizer.detach()
            self.ledger.release(buffer.nbytes)

        self._run(EventType.MEMORY_FREE, dev, op, nbytes=buffer.nbytes)

    def export_dlpack(self, buffer: GuardedBuffer, **kwargs: Any) -> object:
        """The DLPack capsule of `buffer`: a view that reads and writes it, so it
        needs memory.copy_d2h and memory.copy_h2d on the device. The view keeps
        the memory alive (out of the pool) until the consumer drops it."""
        dev = self._own(buffer, Permission.MEMORY_COPY_D2H)
        self._require(Permission.MEMORY_COPY_D2H, dev)
        self._require(Permission.MEMORY_COPY_H2D, dev)
        return self._run(
            EventType.MEMORY_COPY_D2H,
            dev,
            lambda: _export(buffer, kwargs),
            nbytes=buffer.nbytes,
            export="dlpack",
        )

    def copy(
        self,
        dst: Any,
        src: Any,
        nbytes: int | None = None,
        *,
        dst_offset: int = 0,
        src_offset: int = 0,
        stream: exogpu.Stream | None = None,
    ) -> None:
        """Copy between guarded buffers and host objects. The permission needed is
        that of the direction: copy_h2d / copy_d2h on the device, copy_d2d within a
        device, copy_p2p (on both devices) between two devices."""
        core = self._exogpu
        for side in (dst, src):
            if isinstance(side, core.Buffer):
                raise TypeError(
                    "Session.copy takes buffers allocated through a Session "
                    "(GuardedBuffer), not raw exogpu.Buffer objects"
                )
        g_dst = dst if isinstance(dst, GuardedBuffer) else None
        g_src = src if isinstance(src, GuardedBuffer) else None
        if g_dst is None and g_src is None:
            raise core.InvalidArgument("copy: at least one side must be a GuardedBuffer")
        checks: list[tuple[Permission, _Dev]]
        if g_dst is not None:
            perm = Permission.MEMORY_COPY_H2D if g_src is None else _copy_perm(g_dst, g_src)
            self._own(g_dst, perm)
        if g_src is not None:
            perm = Permission.MEMORY_COPY_D2H if g_dst is None else _copy_perm(g_dst, g_src)
            self._own(g_src, perm)
        if g_dst is not None and g_src is not None:
            d_dev, s_dev = self._dev(g_dst.device_id), self._dev(g_src.device_id)
            if d_dev.id == s_dev.id:
                event, checks = EventType.MEMORY_COPY_D2D, [(Permission.MEMORY_COPY_D2D, d_dev)]
            else:
                event = EventType.MEMORY_COPY_P2P
                checks = [(Permission.MEMORY_COPY_P2P, s_dev), (Permission.MEMORY_COPY_P2P, d_dev)]
        elif g_dst is not None:
            d_dev = self._dev(g_dst.device_id)
            event, checks = EventType.MEMORY_COPY_H2D, [(Permission.MEMORY_COPY_H2D, d_dev)]
        else:
            assert g_src is not None
            s_dev = self._dev(g_src.device_id)
            event, checks = EventType.MEMORY_COPY_D2H, [(Permission.MEMORY_COPY_D2H, s_dev)]
        for perm, dev in checks:
            self._require(perm, dev)
        raw_dst = g_dst._buf if g_dst is not None else dst
        raw_src = g_src._buf if g_src is not None else src
        details: dict[str, Any] = {
            "nbytes": nbytes,
            "dst_offset": dst_offset,
            "src_offset": src_offset,
        }
        if event is EventType.MEMORY_COPY_P2P:
            details["peer"] = checks[0][1].id
        self._run(
            event,
            checks[-1][1],
            lambda: core.copy(
                raw_dst, raw_src, nbytes, stream, dst_offset=dst_offset, src_offset=src_offset
            ),
            **details,
        )
