"""Role-based access control: roles, permissions, device-scoped grants, quotas.

Deny by default: a principal holds a permission on a device only when one of its
grants gives it there, no denial covers it and its policy has not expired. An
explicit denial beats any grant.

Checks are on the hot path of every guarded device operation, so the answer for
one (principal, device) pair is computed once per policy and cached as a
frozenset; a check is then a dict lookup, a set lookup and a clock read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from fnmatch import fnmatchcase

__all__ = [
    "ROLE_PERMISSIONS",
    "AccessControl",
    "Denial",
    "Grant",
    "Permission",
    "PermissionDenied",
    "Policy",
    "PolicyError",
    "PrincipalPolicy",
    "QuotaExceeded",
    "QuotaLedger",
    "Role",
    "pattern_covers",
    "validate_pattern",
]


class Permission(str, Enum):
    DEVICE_LIST = "device.list"
    DEVICE_INFO = "device.info"
    MEMORY_ALLOCATE = "memory.allocate"
    MEMORY_FREE = "memory.free"
    MEMORY_COPY_H2D = "memory.copy_h2d"
    MEMORY_COPY_D2H = "memory.copy_d2h"
    MEMORY_COPY_D2D = "memory.copy_d2d"
    MEMORY_COPY_P2P = "memory.copy_p2p"
    COMPUTE_EXECUTE = "compute.execute"
    COMPUTE_SYNCHRONIZE = "compute.synchronize"
    MONITOR_MEMORY = "monitor.memory"
    MONITOR_THERMAL = "monitor.thermal"
    MONITOR_POWER = "monitor.power"
    ADMIN_POLICY = "admin.policy"

    def __str__(self) -> str:
        return self.value


class Role(str, Enum):
    MONITOR = "monitor"
    USER = "user"
    POWER_USER = "power_user"
    ADMIN = "admin"

    def __str__(self) -> str:
        return self.value


_P = Permission
_MONITOR = frozenset(
    {_P.DEVICE_LIST, _P.DEVICE_INFO, _P.MONITOR_MEMORY, _P.MONITOR_THERMAL, _P.MONITOR_POWER}
)
_USER = _MONITOR | {
    _P.MEMORY_ALLOCATE,
    _P.MEMORY_FREE,
    _P.MEMORY_COPY_H2D,
    _P.MEMORY_COPY_D2H,
    _P.MEMORY_COPY_D2D,
    _P.COMPUTE_EXECUTE,
    _P.COMPUTE_SYNCHRONIZE,
}
_POWER_USER = _USER | {_P.MEMORY_COPY_P2P}

ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.MONITOR: _MONITOR,
    Role.USER: _USER,
    Role.POWER_USER: _POWER_USER,
    Role.ADMIN: frozenset(Permission),
}


class PolicyError(ValueError):
    """A policy (or a policy file) is invalid; `line` is the line at fault when known."""

    def __init__(self, message: str, line: int | None = None, source: str | None = None):
        where = ""
        if source is not None:
            where = f"{source}:{line}: " if line is not None else f"{source}: "
        elif line is not None:
            where = f"line {line}: "
        super().__init__(where + message)
        self.line = line
        self.source = source
        self.reason = message


class PermissionDenied(PermissionError):
    def __init__(
        self, principal: str, permission: Permission | str, device: str | None, reason: str
    ):
        on = f" on {device}" if device is not None else ""
        super().__init__(f"{principal!r} may not {permission}{on}: {reason}")
        self.principal = principal
        self.permission = str(permission)
        self.device = device
        self.reason = reason


class QuotaExceeded(MemoryError):
    def __init__(self, principal: str, requested: int, used: int, limit: int):
        super().__init__(
            f"memory quota of {principal!r} exceeded: {requested} bytes requested, "
            f"{used} of {limit} bytes in use"
        )
        self.principal = principal
        self.requested = requested
        self.used = used
        self.limit = limit


_PATTERN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:.-*?")


def validate_pattern(pattern: object) -> str:
    """A device pattern: a device id with `*` and `?` wildcards (no `[...]` sets)."""
    if not isinstance(pattern, str) or not pattern:
        raise PolicyError(f"device pattern must be a non-empty string, got {pattern!r}")
    bad = set(pattern) - _PATTERN_CHARS
    if bad:
        raise PolicyError(
            f"device pattern {pattern!r} has characters outside [A-Za-z0-9_:.-*?]: "
            + "".join(sorted(bad))
        )
    return pattern


def _has_wildcard(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


def pattern_covers(outer: str, inner: str) -> bool:
    """True when every device id matching `inner` also matches `outer`.

    Sound but not complete: when containment cannot be shown simply, the answer is
    False, so escalation checks err on the side of refusing.
    """
    if outer == "*" or outer == inner:
        return True
    if not _has_wildcard(inner):
        return fnmatchcase(inner, outer)
    prefix = outer[:-1]
    return outer.endswith("*") and not _has_wildcard(prefix) and inner.startswith(prefix)


def _may_overlap(a: str, b: str) -> bool:
    """Could some device id match both patterns? Conservative: True when unsure."""
    if not _has_wildcard(a):
        return fnmatchcase(a, b)
    if not _has_wildcard(b):
        return fnmatchcase(b, a)
    pa, pb = a.split("*", 1)[0].split("?", 1)[0], b.split("*", 1)[0].split("?", 1)[0]
    return pa.startswith(pb) or pb.startswith(pa)


@dataclass(frozen=True)
class Grant:
    """Roles and single permissions, given on the devices matching any of `devices`."""

    devices: tuple[str, ...]
    roles: tuple[Role, ...] = ()
    permissions: tuple[Permission, ...] = ()

    def permission_set(self) -> frozenset[Permission]:
        perms: set[Permission] = set(self.permissions)
        for role in self.roles:
            perms |= ROLE_PERMISSIONS[role]
        return frozenset(perms)


@dataclass(frozen=True)
class Denial:
    """An explicit denial of one permission, everywhere (`devices` None) or on patterns."""

    permission: Permission
    devices: tuple[str, ...] | None = None

    def covers_device(self, names: Iterable[str]) -> bool:
        if self.devices is None:
            return True
        return any(fnmatchcase(n, p) for n in names for p in self.devices)

    def to_string(self) -> str:
        if self.devices is None:
            return self.permission.value
        return ",".join(f"{self.permission.value}@{d}" for d in self.devices)


@dataclass(frozen=True)
class PrincipalPolicy:
    name: str
    grants: tuple[Grant, ...] = ()
    deny: tuple[Denial, ...] = ()
    memory_quota_bytes: int | None = None
    expires: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise PolicyError(f"principal name must be a non-empty string, got {self.name!r}")
        if self.memory_quota_bytes is not None and (
            isinstance(self.memory_quota_bytes, bool)
            or not isinstance(self.memory_quota_bytes, int)
            or self.memory_quota_bytes < 0
        ):
            raise PolicyError(
                f"principal {self.name!r}: memory_quota_bytes must be a non-negative integer, "
                f"got {self.memory_quota_bytes!r}"
            )
        if self.expires is not None and self.expires.tzinfo is None:
            raise PolicyError(
                f"principal {self.name!r}: expires must carry a time zone (e.g. ...Z)"
            )
        for grant in self.grants:
            for pattern in grant.devices:
                validate_pattern(pattern)
        for denial in self.deny:
            for pattern in denial.devices or ():
                validate_pattern(pattern)

    @property
    def expires_ts(self) -> float:
        return float("inf") if self.expires is None else self.expires.timestamp()

    def denied(self, permission: Permission, names: Iterable[str]) -> bool:
        names = tuple(names)
        return any(d.permission == permission and d.covers_device(names) for d in self.deny)

    def permissions_on(self, names: Iterable[str]) -> frozenset[Permission]:
        """Permissions held on a device known by `names` (its id and aliases)."""
        names = tuple(names)
        perms: set[Permission] = set()
        for grant in self.grants:
            if any(fnmatchcase(n, p) for n in names for p in grant.devices):
                perms |= grant.permission_set()
        return frozenset(p for p in perms if not self.denied(p, names))

    def node_permissions(self) -> frozenset[Permission]:
        """Permissions for node-wide operations (no device): held by some grant and not
        denied everywhere. Device-scoped denials do not block node-wide operations."""
        perms: set[Permission] = set()
        for grant in self.grants:
            perms |= grant.permission_set()
        return frozenset(
            p for p in perms if not any(d.permission == p and d.devices is None for d in self.deny)
        )

    def holds_everywhere(self, permission: Permission, pattern: str) -> bool:
        """Holds `permission` on every device that `pattern` can match."""
        covered = any(
            permission in g.permission_set() and any(pattern_covers(q, pattern) for q in g.devices)
            for g in self.grants
        )
        if not covered:
            return False
        for d in self.deny:
            if d.permission != permission:
                continue
            if d.devices is None or any(_may_overlap(q, pattern) for q in d.devices):
                return False
        return True


@dataclass(frozen=True)
class Policy:
    principals: Mapping[str, PrincipalPolicy] = field(default_factory=dict)

    @classmethod
    def of(cls, entries: Iterable[PrincipalPolicy]) -> Policy:
        table: dict[str, PrincipalPolicy] = {}
        for entry in entries:
            if entry.name in table:
                raise PolicyError(f"principal {entry.name!r} appears twice")
            table[entry.name] = entry
        return cls(table)


def escalation_problems(actor: PrincipalPolicy, entry: PrincipalPolicy, now: float) -> list[str]:
    """What `entry` would give that `actor` does not hold itself (empty: nothing)."""
    problems: list[str] = []
    if now >= actor.expires_ts:
        return [f"{actor.name!r}'s own policy has expired"]
    for grant in entry.grants:
        for perm in sorted(grant.permission_set(), key=lambda p: p.value):
            for pattern in grant.devices:
                if entry.denied(perm, ()) or any(
                    d.permission == perm
                    and d.devices is not None
                    and any(pattern_covers(q, pattern) for q in d.devices)
                    for d in entry.deny
                ):
                    continue  # granted, then denied in the same entry: gives nothing
                if not actor.holds_everywhere(perm, pattern):
                    problems.append(f"{perm.value} on {pattern}")
    if actor.memory_quota_bytes is not None and (
        entry.memory_quota_bytes is None or entry.memory_quota_bytes > actor.memory_quota_bytes
    ):
        problems.append(
            f"memory quota {entry.memory_quota_bytes or 'unlimited'} above the granter's "
            f"{actor.memory_quota_bytes}"
        )
    if actor.expires is not None and (entry.expires is None or entry.expires > actor.expires):
        problems.append(
            f"expiry {entry.expires or 'never'} later than the granter's {actor.expires}"
        )
    return problems


class QuotaLedger:
    """Bytes in use by one principal across all devices; reserve is atomic."""

    __slots__ = ("_lock", "limit", "principal", "used")

    def __init__(self, principal: str, limit: int | None):
        self.principal = principal
        self.limit = limit
        self.used = 0
        # re-entrant: a buffer's finalizer (which releases) can run inside reserve()
        self._lock = threading.RLock()

    def reserve(self, nbytes: int) -> None:
        with self._lock:
            if self.limit is not None and self.used + nbytes > self.limit:
                raise QuotaExceeded(self.principal, nbytes, self.used, self.limit)
            self.used += nbytes

    def release(self, nbytes: int) -> None:
        with self._lock:
            self.used -= nbytes
            if self.used < 0:  # a bug elsewhere; never let usage go negative silently
                self.used = 0
                raise RuntimeError(f"quota ledger of {self.principal!r} released more than used")


_EMPTY: frozenset[str] = frozenset()
_CACHE_LIMIT = 1 << 16


class _State:
    __slots__ = ("cache", "node", "policy")

    def __init__(self, policy: Policy):
        self.policy = policy
        # (principal, device id) -> (permission values, expiry timestamp)
        self.cache: dict[tuple[str, str | None], tuple[frozenset[str], float]] = {}
        self.node: dict[str, tuple[frozenset[str], float]] = {
            name: (frozenset(p.value for p in e.node_permissions()), e.expires_ts)
            for name, e in policy.principals.items()
        }
        for name, entry in self.node.items():
            self.cache[(name, None)] = entry


class AccessControl:
    """The running policy: permission checks, quotas, and guarded policy updates."""

    def __init__(self, policy: Policy | None = None):
        self._state = _State(policy or Policy())
        self._ledgers: dict[str, QuotaLedger] = {}
        self._lock = threading.Lock()
        self._sync_ledgers()

    @property
    def policy(self) -> Policy:
        return self._state.policy

    # -- checks --------------------------------------------------------------------------
    def allowed(
        self,
        principal: str,
        permission: Permission | str,
        device: str | None = None,
        aliases: tuple[str, ...] = (),
    ) -> bool:
        """May `principal` do `permission` on `device` (None: a node-wide operation)?"""
        state = self._state
        entry = state.cache.get((principal, device))
        if entry is None:
            entry = self._resolve(state, principal, device, aliases)
        return permission in entry[0] and time.time() < entry[1]

    def check(
        self,
        principal: str,
        permission: Permission | str,
        device: str | None = None,
        aliases: tuple[str, ...] = (),
    ) -> None:
        if not self.allowed(principal, permission, device, aliases):
            raise PermissionDenied(
                principal, permission, device, self.explain(principal, permission, device, aliases)
            )

    def explain(
        self,
        principal: str,
        permission: Permission | str,
        device: str | None = None,
        aliases: tuple[str, ...] = (),
    ) -> str:
        entry = self._state.policy.principals.get(principal)
        if entry is None:
            return "unknown principal (deny by default)"
        try:
            perm = Permission(permission)
        except ValueError:
            return f"unknown permission {permission!r}"
        if time.time() >= entry.expires_ts:
            return f"policy expired at {entry.expires}"
        names = (device, *aliases) if device is not None else ()
        if device is None:
            if any(d.permission == perm and d.devices is None for d in entry.deny):
                return "explicitly denied"
            return "not granted"
        if entry.denied(perm, names):
            return "explicitly denied"
        if perm in entry.permissions_on(names):
            return "allowed"
        return "not granted on this device"

    def permissions(
        self, principal: str, device: str | None = None, aliases: tuple[str, ...] = ()
    ) -> frozenset[str]:
        state = self._state
        entry = state.cache.get((principal, device)) or self._resolve(
            state, principal, device, aliases
        )
        return entry[0] if time.time() < entry[1] else _EMPTY

    def _resolve(
        self, state: _State, principal: str, device: str | None, aliases: tuple[str, ...]
    ) -> tuple[frozenset[str], float]:
        policy_entry = state.policy.principals.get(principal)
        if policy_entry is None:
            return (_EMPTY, 0.0)  # not cached: unknown names must not grow the cache
        if device is None:
            return state.node[principal]
        names = (device, *aliases)
        entry = (
            frozenset(p.value for p in policy_entry.permissions_on(names)),
            policy_entry.expires_ts,
        )
        if len(state.cache) >= _CACHE_LIMIT:
            state.cache.clear()
        state.cache[(principal, device)] = entry
        return entry

    # -- quotas --------------------------------------------------------------------------
    def ledger(self, principal: str) -> QuotaLedger:
        with self._lock:
            ledger = self._ledgers.get(principal)
            if ledger is None:
                entry = self._state.policy.principals.get(principal)
                limit = entry.memory_quota_bytes if entry is not None else 0
                ledger = self._ledgers[principal] = QuotaLedger(principal, limit)
            return ledger

    def _sync_ledgers(self) -> None:
        with self._lock:
            for name, ledger in self._ledgers.items():
                entry = self._state.policy.principals.get(name)
                ledger.limit = entry.memory_quota_bytes if entry is not None else 0

    # -- updates -------------------------------------------------------------------------
    def replace_policy(self, policy: Policy, actor: str | None = None) -> None:
        """Install `policy` whole. `actor` None is the local operator (trusted);
        otherwise the actor needs admin.policy and may only add, change or remove
        entries within what it holds itself."""
        if actor is not None:
            problems = self.escalation_problems(actor, policy)
            if problems:
                raise PermissionDenied(
                    actor,
                    Permission.ADMIN_POLICY,
                    None,
                    "escalation refused: " + "; ".join(problems),
                )
        self._state = _State(policy)
        self._sync_ledgers()

    def escalation_problems(self, actor: str, policy: Policy) -> list[str]:
        current = self._state.policy.principals
        actor_entry = current.get(actor)
        if actor_entry is None or not self.allowed(actor, Permission.ADMIN_POLICY):
            return [f"{actor!r} does not hold admin.policy"]
        now = time.time()
        problems: list[str] = []
        names = set(current) | set(policy.principals)
        for name in sorted(names):
            old, new = current.get(name), policy.principals.get(name)
            if old == new:
                continue
            if old is not None:  # you may not touch a principal stronger than you
                problems += [
                    f"{name}: changing/removing {p}"
                    for p in escalation_problems(actor_entry, old, now)
                ]
            if new is not None:
                problems += [
                    f"{name}: granting {p}" for p in escalation_problems(actor_entry, new, now)
                ]
        return problems
