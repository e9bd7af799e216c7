"""Policies as TOML files.

```toml
[[principals]]
name = "alice"                  # a certificate's common name, or a local user
roles = ["user"]
devices = ["cuda:*", "cpu:0"]   # where the roles (and `permissions`) apply
permissions = []                # single permissions beyond the roles
deny = ["memory.copy_p2p", "memory.copy_d2d@cuda:1"]   # PERM or PERM@PATTERN
memory_quota_bytes = 8589934592
expires = 2027-01-01T00:00:00Z

[[principals.grants]]           # more grants, each with its own devices
roles = ["monitor"]
devices = ["*"]
```

A file is accepted whole or not at all: any error raises `PolicyError` naming the
line at fault, and the caller's running policy is left as it was.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import tomli_w

from exogpu.bounded_input import load_toml
from exogpu.security.rbac import (
    Denial,
    Grant,
    Permission,
    Policy,
    PolicyError,
    PrincipalPolicy,
    Role,
    validate_pattern,
)

__all__ = ["dump_policy", "load_policy", "parse_policy", "save_policy"]

_TOP_KEYS = {"version", "principals"}
_PRINCIPAL_KEYS = {
    "name",
    "roles",
    "devices",
    "permissions",
    "deny",
    "memory_quota_bytes",
    "expires",
    "grants",
}
_GRANT_KEYS = {"roles", "permissions", "devices"}
_Err = Callable[..., PolicyError]  # (message, key=None) -> error at that key's line
_Fail = Callable[..., PolicyError]  # (message, entry index, key, grant index) -> error
# A policy names principals and patterns; a megabyte is far beyond any real one.
_MAX_POLICY_BYTES = 1 << 20
_SYNTAX_LINE = re.compile(r"\(at line (\d+), column \d+\)")


class _Locator:
    """Finds the line of a key inside the n-th [[principals]] (or its grants) block,
    since tomllib gives positions only for syntax errors."""

    def __init__(self, text: str):
        self.lines = text.splitlines()

    def _headers(self, header: str, start: int = 0, stop: int | None = None) -> list[int]:
        pat = re.compile(r"^\s*\[\[\s*" + re.escape(header) + r"\s*\]\]")
        stop = len(self.lines) if stop is None else stop
        return [i for i in range(start, stop) if pat.match(self.lines[i])]

    def _block(self, index: int) -> tuple[int, int] | None:
        heads = self._headers("principals")
        if index >= len(heads):
            return None
        start = heads[index]
        stop = heads[index + 1] if index + 1 < len(heads) else len(self.lines)
        return start, stop

    def line(
        self, index: int | None, key: str | None = None, grant: int | None = None
    ) -> int | None:
        if index is None:
            return self._key_line(key, 0, len(self.lines)) if key else None
        block = self._block(index)
        if block is None:
            return None
        start, stop = block
        if grant is not None:
            heads = self._headers("principals.grants", start, stop)
            if grant >= len(heads):
                return start + 1
            start = heads[grant]
            stop = heads[grant + 1] if grant + 1 < len(heads) else stop
        if key is None:
            return start + 1
        found = self._key_line(key, start, stop)
        return found if found is not None else start + 1

    def _key_line(self, key: str | None, start: int, stop: int) -> int | None:
        pat = re.compile(r"^\s*" + re.escape(key or "") + r"\s*=")
        for i in range(start, stop):
            if pat.match(self.lines[i]):
                return i + 1
        return None


def parse_policy(text: str | bytes, source: str | None = None) -> Policy:
    """Parse and check a whole policy; `PolicyError` (naming the line when known) on
    any fault, hostile input included: size, nesting and numbers are bounded before
    and after tomllib sees the text, so no RecursionError or OverflowError escapes."""

    def bounded(message: str) -> PolicyError:
        m = _SYNTAX_LINE.search(message)
        prefix = "TOML syntax: " if "not valid TOML" in message else ""
        return PolicyError(prefix + message, int(m.group(1)) if m else None, source)

    data = load_toml(text, what="policy", error=bounded, max_bytes=_MAX_POLICY_BYTES)
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    loc = _Locator(text)

    def fail(
        message: str, index: int | None = None, key: str | None = None, grant: int | None = None
    ) -> PolicyError:
        return PolicyError(message, loc.line(index, key, grant), source)

    unknown = set(data) - _TOP_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise fail(f"unknown top-level key {key!r} (expected {sorted(_TOP_KEYS)})", None, key)
    if data.get("version", 1) != 1:
        raise fail(f"unsupported policy version {data['version']!r}", None, "version")
    raw = data.get("principals", [])
    if not isinstance(raw, list) or not all(isinstance(p, dict) for p in raw):
        raise fail("'principals' must be an array of tables ([[principals]])", None, "principals")

    entries: list[PrincipalPolicy] = []
    seen: dict[str, int] = {}
    for i, table in enumerate(raw):
        entry = _principal(table, i, fail)
        if entry.name in seen:
            raise fail(
                f"principal {entry.name!r} appears twice (first in entry {seen[entry.name] + 1})",
                i,
                "name",
            )
        seen[entry.name] = i
        entries.append(entry)
    return Policy.of(entries)


def _strings(value: Any, what: str, err: _Err) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise err(f"{what} must be an array of strings, got {value!r}")
    return list(value)


def _grant(table: dict[str, Any], who: str, err: _Err) -> Grant | None:
    roles_raw = _strings(table.get("roles", []), f"{who}: 'roles'", err)
    perms_raw = _strings(table.get("permissions", []), f"{who}: 'permissions'", err)
    devices = _strings(table.get("devices", []), f"{who}: 'devices'", err)
    roles: list[Role] = []
    for r in roles_raw:
        try:
            roles.append(Role(r))
        except ValueError:
            raise err(
                f"{who}: unknown role {r!r} (known: {', '.join(x.value for x in Role)})", "roles"
            ) from None
    perms: list[Permission] = []
    for p in perms_raw:
        try:
            perms.append(Permission(p))
        except ValueError:
            raise err(f"{who}: unknown permission {p!r}", "permissions") from None
    if not roles and not perms:
        if devices:
            raise err(f"{who}: 'devices' given without 'roles' or 'permissions'", "devices")
        return None
    if not devices:
        raise err(
            f"{who}: 'devices' is required with roles or permissions "
            '(use ["*"] for every device)',
            "roles" if roles else "permissions",
        )
    for d in devices:
        try:
            validate_pattern(d)
        except PolicyError as exc:
            raise err(f"{who}: {exc.reason}", "devices") from None
    return Grant(tuple(devices), tuple(roles), tuple(perms))


def _denial(text: str, who: str, err: _Err) -> Denial:
    perm_text, sep, pattern = text.partition("@")
    try:
        perm = Permission(perm_text)
    except ValueError:
        raise err(f"{who}: unknown permission {perm_text!r} in deny", "deny") from None
    if not sep:
        return Denial(perm)
    try:
        return Denial(perm, (validate_pattern(pattern),))
    except PolicyError as exc:
        raise err(f"{who}: {exc.reason}", "deny") from None


def _principal(table: dict[str, Any], i: int, fail: _Fail) -> PrincipalPolicy:
    name = table.get("name")
    if not isinstance(name, str) or not name:
        raise fail(f"principal entry {i + 1}: 'name' must be a non-empty string", i, "name")
    who = f"principal {name!r}"

    def err(message: str, key: str | None = None) -> PolicyError:
        return fail(message, i, key)

    unknown = set(table) - _PRINCIPAL_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise err(f"{who}: unknown key {key!r} (expected {sorted(_PRINCIPAL_KEYS)})", key)

    grants: list[Grant] = []
    top = _grant({k: table[k] for k in _GRANT_KEYS if k in table}, who, err)
    if top is not None:
        grants.append(top)
    extra = table.get("grants", [])
    if not isinstance(extra, list) or not all(isinstance(g, dict) for g in extra):
        raise err(f"{who}: 'grants' must be an array of tables", "grants")
    for j, gtable in enumerate(extra):

        def gerr(message: str, key: str | None = None, j: int = j) -> PolicyError:
            return fail(message, i, key, j)

        bad = set(gtable) - _GRANT_KEYS
        if bad:
            raise gerr(f"{who} grant {j + 1}: unknown key {sorted(bad)[0]!r}", sorted(bad)[0])
        g = _grant(gtable, f"{who} grant {j + 1}", gerr)
        if g is None:
            raise gerr(f"{who} grant {j + 1}: grants nothing (no roles or permissions)")
        grants.append(g)

    deny = tuple(
        _denial(d, who, err) for d in _strings(table.get("deny", []), f"{who}: 'deny'", err)
    )
    quota = table.get("memory_quota_bytes")
    if quota is not None and (isinstance(quota, bool) or not isinstance(quota, int) or quota < 0):
        raise err(
            f"{who}: memory_quota_bytes must be a non-negative integer, got {quota!r}",
            "memory_quota_bytes",
        )
    expires = table.get("expires")
    if expires is not None:
        if not isinstance(expires, datetime):
            raise err(
                f"{who}: expires must be a TOML date-time with an offset, "
                f"e.g. 2027-01-01T00:00:00Z, got {expires!r}",
                "expires",
            )
        if expires.tzinfo is None:
            raise err(
                f"{who}: expires needs a time zone offset (e.g. ...Z), got {expires}", "expires"
            )
    return PrincipalPolicy(name, tuple(grants), deny, quota, expires)


def load_policy(path: str | os.PathLike[str]) -> Policy:
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_POLICY_BYTES + 1)  # never read a huge file whole
    except OSError as exc:
        raise PolicyError(f"cannot read policy file: {exc.strerror}", None, str(path)) from exc
    return parse_policy(data, str(path))


def _to_table(entry: PrincipalPolicy) -> dict[str, Any]:
    table: dict[str, Any] = {"name": entry.name}
    grants = list(entry.grants)
    if grants:
        first = grants.pop(0)
        if first.roles:
            table["roles"] = [r.value for r in first.roles]
        if first.permissions:
            table["permissions"] = [p.value for p in first.permissions]
        table["devices"] = list(first.devices)
    if entry.deny:
        table["deny"] = [s for d in entry.deny for s in d.to_string().split(",")]
    if entry.memory_quota_bytes is not None:
        table["memory_quota_bytes"] = entry.memory_quota_bytes
    if entry.expires is not None:
        table["expires"] = entry.expires
    if grants:
        table["grants"] = [
            {
                k: v
                for k, v in (
                    ("roles", [r.value for r in g.roles]),
                    ("permissions", [p.value for p in g.permissions]),
                    ("devices", list(g.devices)),
                )
                if v
            }
            for g in grants
        ]
    return table


def dump_policy(policy: Policy) -> str:
    data = {"version": 1, "principals": [_to_table(e) for e in policy.principals.values()]}
    return tomli_w.dumps(data)


def save_policy(policy: Policy, path: str | os.PathLike[str]) -> None:
    """Write atomically (temporary file, fsync, rename): a reader sees old or new, whole."""
    path = Path(path)
    text = dump_policy(policy)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
