"""RBAC: roles, device-scoped grants, denials, expiry, escalation, policy files."""

from __future__ import annotations

import datetime as dt
import fnmatch
import itertools
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exogpu.security.policy_file import dump_policy, load_policy, parse_policy, save_policy
from exogpu.security.rbac import (
    ROLE_PERMISSIONS,
    AccessControl,
    Denial,
    Grant,
    Permission,
    PermissionDenied,
    Policy,
    PolicyError,
    PrincipalPolicy,
    Role,
    device_matches,
    pattern_covers,
    validate_pattern,
    validate_principal,
)

EXAMPLE = """\
[[principals]]
name = "alice"              # a certificate's common name, or a local user
roles = ["user"]
devices = ["cuda:*", "cpu:0"]   # where the roles apply
deny = ["memory.copy_p2p"]      # explicit denials
memory_quota_bytes = 8589934592
expires = 2099-01-01T00:00:00Z

[[principals]]
name = "ops"
roles = ["admin"]
devices = ["*"]

[[principals]]
name = "carol"
roles = ["power_user"]
devices = ["cuda:*"]
deny = ["memory.copy_d2d@cuda:1"]

[[principals.grants]]
roles = ["monitor"]
devices = ["cpu:*"]
"""


def test_four_roles_over_fourteen_permissions() -> None:
    assert len(Permission) == 14
    assert set(ROLE_PERMISSIONS) == set(Role)
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission)
    # each role strictly extends the one below
    chain = [ROLE_PERMISSIONS[r] for r in (Role.MONITOR, Role.USER, Role.POWER_USER, Role.ADMIN)]
    assert all(a < b for a, b in itertools.pairwise(chain))
    assert Permission.MEMORY_COPY_P2P not in ROLE_PERMISSIONS[Role.USER]
    assert Permission.MEMORY_ALLOCATE not in ROLE_PERMISSIONS[Role.MONITOR]


def test_example_policy_checks() -> None:
    acl = AccessControl(parse_policy(EXAMPLE))
    assert acl.allowed("alice", Permission.MEMORY_ALLOCATE, "cuda:3")
    assert acl.allowed("alice", "memory.allocate", "cpu:0")
    assert not acl.allowed("alice", Permission.MEMORY_ALLOCATE, "cpu:1")  # not in devices
    assert not acl.allowed("alice", Permission.MEMORY_COPY_P2P, "cuda:0")  # role lacks it
    assert not acl.allowed("alice", Permission.ADMIN_POLICY)
    # carol: power_user on cuda, d2d denied on cuda:1 only; monitor on cpu
    assert acl.allowed("carol", Permission.MEMORY_COPY_P2P, "cuda:0")
    assert acl.allowed("carol", Permission.MEMORY_COPY_D2D, "cuda:0")
    assert not acl.allowed("carol", Permission.MEMORY_COPY_D2D, "cuda:1")
    assert acl.allowed("carol", Permission.MONITOR_MEMORY, "cpu:0")
    assert not acl.allowed("carol", Permission.MEMORY_ALLOCATE, "cpu:0")
    # node-wide: held by some grant; a device-scoped denial does not block it
    assert acl.allowed("carol", Permission.MEMORY_COPY_D2D)
    assert acl.allowed("ops", Permission.ADMIN_POLICY)


def test_explicit_deny_beats_allow_and_says_so() -> None:
    entry = PrincipalPolicy("bob", (Grant(("*",), (Role.ADMIN,)),),
                            (Denial(Permission.MEMORY_FREE),))
    acl = AccessControl(Policy.of([entry]))
    assert not acl.allowed("bob", Permission.MEMORY_FREE, "cpu:0")
    assert not acl.allowed("bob", Permission.MEMORY_FREE)
    with pytest.raises(PermissionDenied, match="explicitly denied") as info:
        acl.check("bob", Permission.MEMORY_FREE, "cpu:0")
    assert info.value.permission == "memory.free" and info.value.device == "cpu:0"


def test_deny_by_default() -> None:
    acl = AccessControl(parse_policy(EXAMPLE))
    for perm in Permission:
        assert not acl.allowed("mallory", perm, "cpu:0")
        assert not acl.allowed("mallory", perm)
    with pytest.raises(PermissionDenied, match="unknown principal"):
        acl.check("mallory", Permission.DEVICE_LIST)
    assert not acl.allowed("alice", "no.such.permission", "cpu:0")


def test_aliases_match_grants_and_denials() -> None:
    entry = PrincipalPolicy("a", (Grant(("vulkan:*",), (Role.USER,)),),
                            (Denial(Permission.MEMORY_FREE, ("cuda:0",)),))
    acl = AccessControl(Policy.of([entry]))
    # the device's preferred id is cuda:0; it is also vulkan:1
    assert acl.allowed("a", Permission.MEMORY_ALLOCATE, "cuda:0", ("vulkan:1",))
    assert not acl.allowed("a", Permission.MEMORY_FREE, "cuda:0", ("vulkan:1",))


def test_expired_policy_denies() -> None:
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    entry = PrincipalPolicy("old", (Grant(("*",), (Role.ADMIN,)),), expires=past)
    acl = AccessControl(Policy.of([entry]))
    assert not acl.allowed("old", Permission.DEVICE_LIST, "cpu:0")
    with pytest.raises(PermissionDenied, match="expired"):
        acl.check("old", Permission.DEVICE_LIST)


def test_policy_expires_while_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    import exogpu.security.rbac as rbac

    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    acl = AccessControl(Policy.of([PrincipalPolicy("t", (Grant(("*",), (Role.USER,)),),
                                                   expires=soon)]))
    assert acl.allowed("t", Permission.MEMORY_ALLOCATE, "cpu:0")  # now cached
    later = soon.timestamp() + 1
    monkeypatch.setattr(rbac.time, "time", lambda: later)
    assert not acl.allowed("t", Permission.MEMORY_ALLOCATE, "cpu:0")


# -- escalation ---------------------------------------------------------------------------
SCOPED_ADMIN = """\
[[principals]]
name = "root"
roles = ["admin"]
devices = ["*"]

[[principals]]
name = "cuda-admin"
roles = ["admin"]
devices = ["cuda:*"]
deny = ["memory.copy_p2p"]
memory_quota_bytes = 1000
"""


def _with(extra: str) -> Policy:
    return parse_policy(SCOPED_ADMIN + extra)


def test_escalation_refused_beyond_own_rights() -> None:
    acl = AccessControl(parse_policy(SCOPED_ADMIN))
    ok = _with('[[principals]]\nname = "dan"\nroles = ["user"]\ndevices = ["cuda:1"]\n'
               'memory_quota_bytes = 500\n')
    assert acl.escalation_problems("cuda-admin", ok) == []
    acl.replace_policy(ok, actor="cuda-admin")
    assert acl.allowed("dan", Permission.MEMORY_ALLOCATE, "cuda:1")

    cases = {
        "cpu device": ('roles = ["user"]\ndevices = ["cpu:0"]\nmemory_quota_bytes = 1\n',
                       "on cpu:0"),
        "all devices": ('roles = ["user"]\ndevices = ["*"]\nmemory_quota_bytes = 1\n', "on *"),
        "denied perm": ('roles = ["power_user"]\ndevices = ["cuda:0"]\nmemory_quota_bytes = 1\n',
                        "memory.copy_p2p"),
        "no quota": ('roles = ["user"]\ndevices = ["cuda:0"]\n', "memory quota"),
        "big quota": ('roles = ["user"]\ndevices = ["cuda:0"]\nmemory_quota_bytes = 2000\n',
                      "memory quota"),
    }
    for name, (body, needle) in cases.items():
        bad = _with(f'[[principals]]\nname = "eve"\n{body}')
        before = acl.policy
        with pytest.raises(PermissionDenied, match="escalation refused") as info:
            acl.replace_policy(bad, actor="cuda-admin")
        assert needle in str(info.value), name
        assert acl.policy is before, name  # nothing changed


def test_cannot_touch_stronger_principal_or_self_escalate() -> None:
    acl = AccessControl(parse_policy(SCOPED_ADMIN))
    without_root = Policy.of([acl.policy.principals["cuda-admin"]])
    with pytest.raises(PermissionDenied, match="root: changing/removing"):
        acl.replace_policy(without_root, actor="cuda-admin")
    self_up = SCOPED_ADMIN.replace('devices = ["cuda:*"]', 'devices = ["*"]')
    with pytest.raises(PermissionDenied, match="cuda-admin: granting"):
        acl.replace_policy(parse_policy(self_up), actor="cuda-admin")
    with pytest.raises(PermissionDenied, match=r"does not hold admin\.policy"):
        acl.replace_policy(parse_policy(SCOPED_ADMIN), actor="nobody")
    # the root admin may do all of it
    acl.replace_policy(parse_policy(self_up), actor="root")
    assert acl.allowed("cuda-admin", Permission.MEMORY_ALLOCATE, "cpu:0")


def test_grant_then_deny_in_same_entry_is_not_escalation() -> None:
    acl = AccessControl(parse_policy(SCOPED_ADMIN))
    p = _with('[[principals]]\nname = "f"\nroles = ["power_user"]\ndevices = ["cuda:0"]\n'
              'deny = ["memory.copy_p2p"]\nmemory_quota_bytes = 10\n')
    assert acl.escalation_problems("cuda-admin", p) == []


DEVICE_IDS = ["cpu:0", "cpu:1", "cuda:0", "cuda:1", "cuda:10", "vulkan:0", "hip:2", "cud:1"]
PATTERN_LIST = ["*", "cpu:*", "cuda:*", "cuda:1", "cuda:1*", "cuda:?", "cpu:0", "vulkan:*",
                "*:0", "c*:*", "hip:2", "cud*:?", "*:1?", "?u*:*"]
patterns = st.sampled_from(PATTERN_LIST)


def reference_match(device: str, pattern: str) -> bool:
    """The grammar written out again: an id is BACKEND:INDEX; a pattern is '*' or
    two parts, each matched on its own (so no wildcard reaches across the ':')."""
    if re.fullmatch(r"[a-z][a-z0-9_]*:(0|[1-9][0-9]*)", device) is None:
        return False
    if pattern == "*":
        return True
    backend, index = device.split(":")
    pb, pi = pattern.split(":")
    return fnmatch.fnmatchcase(backend, pb) and fnmatch.fnmatchcase(index, pi)


@settings(max_examples=200, deadline=None)
@given(outer=patterns, inner=patterns, extra=st.from_regex(r"[a-z]{1,5}:[0-9]{1,2}",
                                                           fullmatch=True))
def test_pattern_covers_is_sound(outer: str, inner: str, extra: str) -> None:
    if pattern_covers(outer, inner):
        for dev in [*DEVICE_IDS, extra]:
            if reference_match(dev, inner):
                assert reference_match(dev, outer), (outer, inner, dev)


@settings(max_examples=300, deadline=None)
@given(pattern=patterns, name=st.one_of(
    st.sampled_from([*DEVICE_IDS, "cpu:0:evil", "cpu:0:0", "cpu:", ":0", "cpu:01", "CPU:0",
                     "cpu:0 ", " cpu:0", "cpu:0\n", "cpu::0", "cpu:*", "*", "cuda:1:1"]),
    st.text(alphabet="cpu:01*?a\n ", max_size=8)))
def test_patterns_match_the_id_grammar_exactly(pattern: str, name: str) -> None:
    assert device_matches(name, pattern) is reference_match(name, pattern), (name, pattern)


def test_wildcards_stay_inside_their_part() -> None:
    acl = AccessControl(Policy.of([PrincipalPolicy("a", (Grant(("cpu:*",), (Role.USER,)),)),
                                   PrincipalPolicy("b", (Grant(("*",), (Role.USER,)),))]),
                        aliases=None)
    for principal in ("a", "b"):
        assert acl.allowed(principal, Permission.MEMORY_ALLOCATE, "cpu:0")
        for name in ("cpu:0:evil", "cpu:", "cpu:01", "CPU:0", "cpu:0 "):
            assert not acl.allowed(principal, Permission.MEMORY_ALLOCATE, name), name
            with pytest.raises(PermissionDenied, match="not a device id"):
                acl.check(principal, Permission.MEMORY_ALLOCATE, name)
    assert device_matches("cuda:12", "*:1?") and not device_matches("cuda:1", "*:1?")
    assert not device_matches("cpu:1:0", "*:0")


@pytest.mark.parametrize("pattern", ["c*", "cpu", "cpu:0:1", "cpu:x", "CPU:0", ":0", "cpu:",
                                     "cpu:*:*", "cuda[0]:1", "cpu:0 ", "", "cpu:-1", "**x:"])
def test_patterns_outside_the_grammar_are_refused(pattern: str) -> None:
    with pytest.raises(PolicyError) as info:
        validate_pattern(pattern)
    assert repr(pattern) in str(info.value)
    with pytest.raises(PolicyError, match=re.escape(repr(pattern))):
        PrincipalPolicy("a", (Grant((pattern,), (Role.USER,)),))
    with pytest.raises(PolicyError, match=re.escape(repr(pattern))):
        PrincipalPolicy("a", deny=(Denial(Permission.MEMORY_FREE, (pattern,)),))


GOOD_PRINCIPALS = ["alice", "a", "node-1", "gpu-box.lab.example", "svc_build", "ops@site",
                   "A1", "x" * 253, "xn--bcher-kva.example"]
BAD_PRINCIPALS = ["", " alice", "alice ", "al ice", "alice\n", "al\x00ice", "-alice",
                  "alice.", "*", "al*ce", "cpu:0", "a/b", "\u0430lice", "x" * 254, "élan",
                  "a\tb", "_x", "admin\u200b"]


@pytest.mark.parametrize("name", GOOD_PRINCIPALS)
def test_principal_names_of_the_grammar_are_accepted(name: str) -> None:
    assert validate_principal(name) == name
    assert PrincipalPolicy(name).name == name
    policy = parse_policy(f'[[principals]]\nname = "{name}"\nroles = ["user"]\n'
                          'devices = ["*"]\n')
    assert AccessControl(policy, aliases=None).allowed(name, Permission.MEMORY_ALLOCATE,
                                                        "cpu:0")


@pytest.mark.parametrize("name", BAD_PRINCIPALS)
def test_principal_names_outside_the_grammar_are_refused(name: str) -> None:
    with pytest.raises(PolicyError) as info:
        PrincipalPolicy(name, (Grant(("*",), (Role.ADMIN,)),))
    assert repr(name) in str(info.value) or "non-empty" in str(info.value)
    with pytest.raises(PolicyError):
        parse_policy('[[principals]]\nname = ' + json.dumps(name)
                     + '\nroles = ["user"]\ndevices = ["*"]\n')
    for bad in (None, 7, b"alice"):
        with pytest.raises(PolicyError, match="non-empty string"):
            validate_principal(bad)


grants_st = st.lists(
    st.builds(lambda roles, devs: Grant(tuple(devs), tuple(roles)),
              st.lists(st.sampled_from(list(Role)), min_size=1, max_size=2),
              st.lists(patterns, min_size=1, max_size=2)), min_size=1, max_size=2)
denials_st = st.lists(st.builds(Denial, st.sampled_from(list(Permission)),
                                st.one_of(st.none(), st.tuples(patterns))), max_size=3)


@settings(max_examples=150, deadline=None)
@given(actor_grants=grants_st, actor_deny=denials_st, new_grants=grants_st,
       new_deny=denials_st)
def test_accepted_grant_never_exceeds_granter(actor_grants: list[Grant],
                                              actor_deny: list[Denial],
                                              new_grants: list[Grant],
                                              new_deny: list[Denial]) -> None:
    """Whatever the escalation check lets through is held by the granter on every device."""
    admin = Grant(("*",), (), (Permission.ADMIN_POLICY,))
    actor = PrincipalPolicy("actor", (admin, *actor_grants), tuple(actor_deny))
    new = PrincipalPolicy("new", tuple(new_grants), tuple(new_deny))
    acl = AccessControl(Policy.of([actor]))
    proposed = Policy.of([actor, new])
    if acl.escalation_problems("actor", proposed):
        return
    acl.replace_policy(proposed, actor="actor")
    for dev in DEVICE_IDS:
        for perm in Permission:
            if acl.allowed("new", perm, dev):
                assert acl.allowed("actor", perm, dev), (perm, dev)


# -- policy files -------------------------------------------------------------------------
def test_roundtrip_through_file(tmp_path: Path) -> None:
    policy = parse_policy(EXAMPLE)
    path = tmp_path / "policy.toml"
    save_policy(policy, path)
    assert (path.stat().st_mode & 0o777) == 0o600
    again = load_policy(path)
    assert again == policy
    assert parse_policy(dump_policy(again)) == policy
    alice = again.principals["alice"]
    assert alice.memory_quota_bytes == 8589934592
    assert alice.expires == dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("mutation", "line", "needle"),
    [
        (('roles = ["user"]', 'roles = ["usr"]'), 3, "unknown role 'usr'"),
        (('deny = ["memory.copy_p2p"]', 'deny = ["memory.copy_p3p"]'), 5, "memory.copy_p3p"),
        (('memory_quota_bytes = 8589934592', 'memory_quota_bytes = -1'), 6, "non-negative"),
        (('expires = 2099-01-01T00:00:00Z', 'expires = 2099-01-01T00:00:00'), 7, "time zone"),
        (('expires = 2099-01-01T00:00:00Z', 'expires = "soon"'), 7, "date-time"),
        (('name = "ops"', 'name = "alice"'), 10, "appears twice"),
        (('devices = ["*"]', 'devices = ["cuda[0]"]'), 12, "characters outside"),
        (('devices = ["*"]', 'devices = []'), 11, "'devices' is required"),
        (('name = "ops"', 'name = "ops"\ncolour = "red"'), 11, "unknown key 'colour'"),
        (('roles = ["monitor"]', 'roles = ["root"]'), 21, "grant 1: unknown role"),
        (('devices = ["cuda:*", "cpu:0"]', 'devices = ["cuda:*", "cpu:0"'), 5, "TOML syntax"),
    ],
)
def test_invalid_file_rejected_whole_with_line(tmp_path: Path, mutation: tuple[str, str],
                                                line: int, needle: str) -> None:
    old, new = mutation
    assert old in EXAMPLE
    path = tmp_path / "bad.toml"
    path.write_text(EXAMPLE.replace(old, new, 1))
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert info.value.line == line, str(info.value)
    assert needle in str(info.value)
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_unknown_top_level_key_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="line 1: unknown top-level key 'principal'"):
        parse_policy('principal = 1\n')
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy(tmp_path / "missing.toml")
