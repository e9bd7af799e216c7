"""Role-based access control: roles, permissions, device-scoped grants, quotas.

Deny by default: a principal holds a permission on a device only when one of its
grants gives it there, no denial covers it and its policy has not expired. An
explicit denial beats any grant.

A decision about a device is a decision about every id it has: the grants and
denials of all its ids (its aliases: `vulkan:0` is also `cpu:0` when lavapipe
drives the host CPU) apply together, whichever id a caller names and whether or
not the caller passes the aliases. The ids of a device come from a resolver (by
default the core's registry) joined with the aliases the caller passes.

Checks are on the hot path of every guarded device operation, so the answer for
one principal on one device (all its ids) is computed once per policy and
cached as a frozenset, keyed by the principal and the device's full set of ids;
a check is then a few dict lookups, a set lookup and a clock read.

Grammars (anything else is refused with PolicyError naming it):

- device id: ``BACKEND:INDEX``, BACKEND ``[a-z][a-z0-9_]*``, INDEX a decimal
  number without leading zeros (``cpu:0``, ``cuda:12``);
- device pattern: ``*`` (every device) or ``B:I`` where B is a backend with
  ``*`` / ``?`` wildcards and I an index with ``*`` / ``?`` wildcards. A wildcard
  stays inside its part: ``cpu:*`` matches ``cpu:0`` and ``cpu:12`` and never
  ``cpu:0:evil`` (which is no device id, so no pattern matches it);
- principal name: 1 to 253 ASCII letters, digits and ``. _ @ -``, beginning and
  ending with a letter or digit (every node name of `exogpu certs init`, a DNS
  name, is one; so are local user names like ``svc_build`` or ``ops@site``). No
  spaces, control or non-ASCII characters (no look-alike names), no wildcards.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

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
    "device_matches",
    "is_device_id",
    "pattern_covers",
    "registry_aliases",
    "validate_pattern",
    "validate_principal",
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


_PATTERN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_:*?")
_DEVICE_ID = re.compile(r"[a-z][a-z0-9_]*:(?:0|[1-9][0-9]*)")
_BACKEND_PATTERN = re.compile(r"[a-z0-9_*?]+")
_INDEX_PATTERN = re.compile(r"[0-9*?]+")
_PRINCIPAL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._@-]{0,251}[A-Za-z0-9])?")


def is_device_id(name: object) -> bool:
    """Does `name` follow the device id grammar (``BACKEND:INDEX``)?"""
    return isinstance(name, str) and _DEVICE_ID.fullmatch(name) is not None


def validate_principal(name: object) -> str:
    """A principal name (see the module's grammar), or PolicyError naming it."""
    if not isinstance(name, str) or not name:
        raise PolicyError(f"principal name must be a non-empty string, got {name!r}")
    if _PRINCIPAL.fullmatch(name) is None:
        raise PolicyError(
            f"principal name {name!r} is not 1 to 253 ASCII letters, digits and '._@-' "
            "beginning and ending with a letter or digit"
        )
    return name


def validate_pattern(pattern: object) -> str:
    """A device pattern: ``*``, or ``BACKEND:INDEX`` with ``*`` and ``?`` wildcards
    inside each part (no ``[...]`` sets); see the module's grammar."""
    if not isinstance(pattern, str) or not pattern:
        raise PolicyError(f"device pattern must be a non-empty string, got {pattern!r}")
    bad = set(pattern) - _PATTERN_CHARS
    if bad:
        raise PolicyError(
            f"device pattern {pattern!r} has characters outside [a-z0-9_:*?]: "
            + "".join(sorted(bad))
        )
    if pattern == "*":
        return pattern
    backend, colon, index = pattern.partition(":")
    if (
        not colon
        or _BACKEND_PATTERN.fullmatch(backend) is None
        or _INDEX_PATTERN.fullmatch(index) is None
    ):
        raise PolicyError(
            f"device pattern {pattern!r} is not '*' or BACKEND:INDEX (a backend of a-z 0-9 _ "
            "and an index of digits, each with * and ? wildcards, e.g. cuda:* or *:0)"
        )
    return pattern


def _parts(pattern: str) -> tuple[str, str]:
    if pattern == "*":
        return ("*", "*")
    backend, _, index = pattern.partition(":")
    return (backend, index)


def _part_regex(part: str) -> str:
    # A wildcard never crosses the ':' between backend and index.
    return "".join("[^:]*" if c == "*" else "[^:]" if c == "?" else re.escape(c) for c in part)


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str]:
    backend, index = _parts(pattern)
    return re.compile(_part_regex(backend) + ":" + _part_regex(index))


@functools.lru_cache(maxsize=4096)
def _compiled_part(part: str) -> re.Pattern[str]:
    return re.compile(_part_regex(part))


def device_matches(name: str, pattern: str) -> bool:
    """Does the device id `name` match `pattern`? A name outside the id grammar
    matches no pattern."""
    return is_device_id(name) and _compiled(pattern).fullmatch(name) is not None


def _has_wildcard(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


def _part_matches(text: str, pattern: str) -> bool:
    return _compiled_part(pattern).fullmatch(text) is not None


def _part_covers(outer: str, inner: str) -> bool:
    if outer == "*" or outer == inner:
        return True
    if not _has_wildcard(inner):
        return _part_matches(inner, outer)
    prefix = outer[:-1]
    return outer.endswith("*") and not _has_wildcard(prefix) and inner.startswith(prefix)


def pattern_covers(outer: str, inner: str) -> bool:
    """True when every device id matching `inner` also matches `outer`.

    Sound but not complete: when containment cannot be shown simply, the answer is
    False, so escalation checks err on the side of refusing.
    """
    if outer == "*" or outer == inner:
        return True
    (ob, oi), (ib, ii) = _parts(outer), _parts(inner)
    return _part_covers(ob, ib) and _part_covers(oi, ii)


def _part_may_overlap(a: str, b: str) -> bool:
    if not _has_wildcard(a):
        return _part_matches(a, b)
    if not _has_wildcard(b):
        return _part_matches(b, a)
    pa, pb = a.split("*", 1)[0].split("?", 1)[0], b.split("*", 1)[0].split("?", 1)[0]
    return pa.startswith(pb) or pb.startswith(pa)


def _may_overlap(a: str, b: str) -> bool:
    """Could some device id match both patterns? Conservative: True when unsure."""
    (ab, ai), (bb, bi) = _parts(a), _parts(b)
    return _part_may_overlap(ab, bb) and _part_may_overlap(ai, bi)


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
        return any(device_matches(n, p) for n in names for p in self.devices)

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
        validate_principal(self.name)
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
            if any(device_matches(n, p) for n in names for p in grant.devices):
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

AliasResolver = Callable[[str], Iterable[str]]
"""Every id of the device known by one id (the id itself may be left out)."""


def registry_aliases(device: str) -> tuple[str, ...]:
    """The ids of `device` in the core's registry: none when the core is not built
    or does not know the device (then its grants and denials are its own)."""
    if not is_device_id(device):
        return ()
    try:
        import exogpu

        dev = exogpu.device(device)
    except Exception:  # no core, no such device: nothing to join
        return ()
    return (dev.id, *dev.info.aliases)


def registry_devices() -> tuple[str, ...]:
    """Every id in the core's registry (none without a core)."""
    try:
        import exogpu

        return tuple(d.id for d in exogpu.all_devices())
    except Exception:  # no core: no devices to name
        return ()


class _State:
    __slots__ = ("cache", "node", "policy")

    def __init__(self, policy: Policy):
        self.policy = policy
        # (principal, every id of the device) -> (permission values, expiry timestamp);
        # (principal, None) for node-wide operations
        self.cache: dict[tuple[str, frozenset[str] | None], tuple[frozenset[str], float]] = {}
        self.node: dict[str, tuple[frozenset[str], float]] = {
            name: (frozenset(p.value for p in e.node_permissions()), e.expires_ts)
            for name, e in policy.principals.items()
        }
        for name, entry in self.node.items():
            self.cache[(name, None)] = entry


class AccessControl:
    """The running policy: permission checks, quotas, and guarded policy updates.

    `aliases` gives every id of a device from any one of them (default: the core's
    registry); a decision covers all of them and the aliases a caller passes.
    `devices` names the devices there are (default: the registry's), so that an
    update is checked for escalation on each aliased device as a whole."""

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        aliases: AliasResolver | None = registry_aliases,
        devices: Callable[[], Iterable[str]] | None = registry_devices,
    ):
        self._state = _State(policy or Policy())
        self._ledgers: dict[str, QuotaLedger] = {}
        self._lock = threading.Lock()
        self._aliases_of = aliases
        self._devices_of = devices
        # id -> every id of its device, from the resolver (which does not change)
        self._groups: dict[str, frozenset[str]] = {}
        self._sync_ledgers()

    @property
    def policy(self) -> Policy:
        return self._state.policy

    # -- device ids ----------------------------------------------------------------------
    def device_ids(self, device: str, aliases: Iterable[str] = ()) -> frozenset[str]:
        """Every id a decision about `device` covers: its own, the resolver's for it
        and for each of its aliases, and `aliases`."""
        group = self._groups.get(device)
        if group is None:
            group = self._group(device)
        if aliases and not group.issuperset(aliases):
            names = set(group)
            for alias in aliases:
                names |= self._groups.get(alias) or self._group(alias)
            return frozenset(names)
        return group

    def _group(self, device: str) -> frozenset[str]:
        names = {device}
        if self._aliases_of is not None:
            direct = set(self._aliases_of(device))
            names |= direct
            for other in direct - {device}:
                names.update(self._aliases_of(other))
        group = frozenset(names)
        if len(self._groups) >= _CACHE_LIMIT:
            self._groups.clear()  # recomputed from the resolver: the answers stay the same
        self._groups[device] = group
        return group

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
        names = None if device is None else self.device_ids(device, aliases)
        entry = state.cache.get((principal, names))
        if entry is None:
            entry = self._resolve(state, principal, names)
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
        if device is None:
            if any(d.permission == perm and d.devices is None for d in entry.deny):
                return "explicitly denied"
            return "not granted"
        names = sorted(self.device_ids(device, aliases))
        if not any(is_device_id(n) for n in names):
            return f"{device!r} is not a device id (BACKEND:INDEX)"
        if entry.denied(perm, names):
            return "explicitly denied"
        if perm in entry.permissions_on(names):
            return "allowed"
        return "not granted on this device"

    def permissions(
        self, principal: str, device: str | None = None, aliases: tuple[str, ...] = ()
    ) -> frozenset[str]:
        state = self._state
        names = None if device is None else self.device_ids(device, aliases)
        entry = state.cache.get((principal, names)) or self._resolve(state, principal, names)
        return entry[0] if time.time() < entry[1] else _EMPTY

    def _resolve(
        self, state: _State, principal: str, names: frozenset[str] | None
    ) -> tuple[frozenset[str], float]:
        policy_entry = state.policy.principals.get(principal)
        if policy_entry is None:
            return (_EMPTY, 0.0)  # not cached: unknown names must not grow the cache
        if names is None:
            return state.node[principal]
        entry = (
            frozenset(p.value for p in policy_entry.permissions_on(names)),
            policy_entry.expires_ts,
        )
        if len(state.cache) >= _CACHE_LIMIT:
            state.cache.clear()
        state.cache[(principal, names)] = entry
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
        groups = self._aliased_groups()
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
            # Patterns are compared id by id above; an aliased device is all its ids at
            # once, so a grant through one id may reach past the actor's denial on another.
            for group in groups:
                ids = sorted(group)
                held = actor_entry.permissions_on(ids)
                for verb, other in (("changing/removing", old), ("granting", new)):
                    if other is None:
                        continue
                    for perm in sorted(other.permissions_on(ids) - held, key=lambda p: p.value):
                        problem = f"{name}: {verb} {perm.value} on {'='.join(ids)}"
                        if problem not in problems:
                            problems.append(problem)
        return problems

    def _aliased_groups(self) -> list[frozenset[str]]:
        """Every device known to have more than one id."""
        ids = set(self._groups)
        if self._devices_of is not None:
            ids.update(self._devices_of())
        groups = {self.device_ids(i) for i in ids}
        return sorted((g for g in groups if len(g) > 1), key=sorted)
