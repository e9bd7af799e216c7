"""RBAC against a plain reference model: policy replacements, checks and quotas in
random order, with the permission cache in between. Some devices have several ids
(aliases); a check names any one of them and passes any subset of the others (none
too), so a cached answer from one kind of call meets every other kind."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from exogpu.security.rbac import (
    AccessControl,
    Denial,
    Grant,
    Permission,
    Policy,
    PrincipalPolicy,
    QuotaExceeded,
    Role,
)

# The reference's own role table, written from the specification, not imported.
MONITOR = {"device.list", "device.info", "monitor.memory", "monitor.thermal", "monitor.power"}
USER = MONITOR | {"memory.allocate", "memory.free", "memory.copy_h2d", "memory.copy_d2h",
                  "memory.copy_d2d", "compute.execute", "compute.synchronize"}
POWER = USER | {"memory.copy_p2p"}
ADMIN = POWER | {"admin.policy"}
REFERENCE_ROLES = {"monitor": MONITOR, "user": USER, "power_user": POWER, "admin": ADMIN}

NAMES = ["alice", "bob", "carol"]
DEVICES = ["cpu:0", "cpu:1", "cuda:0", "cuda:1", "cuda:12", "vulkan:0", "vulkan:1", "hip:3"]
# The physical devices: lavapipe's vulkan:0 is the host CPU; vulkan:1 and hip:3 are
# other views of cuda:1.
GROUPS = [{"cpu:0", "vulkan:0"}, {"cuda:1", "vulkan:1", "hip:3"}]
IDS_OF = {d: frozenset(next((g for g in GROUPS if d in g), {d})) for d in DEVICES}
PATTERNS = ["*", "cpu:*", "cuda:*", "cuda:1", "cuda:?", "*:0", "vulkan:0", "vulkan:*", "hip:3",
            "*:1", "cpu:0"]
PERMS = sorted(ADMIN)


def resolver(device: str) -> tuple[str, ...]:
    return tuple(IDS_OF.get(device, {device}))


@dataclass
class Spec:
    grants: list[tuple[list[str], list[str], list[str]]]  # roles, permissions, patterns
    deny: list[tuple[str, list[str] | None]]
    quota: int | None
    expired: bool | None  # None: no expiry
    used: int = field(default=0)

    def allowed(self, perm: str, device: str | None) -> bool:
        """The answer on the physical device `device` is one of: a grant on any
        of its ids gives, a denial on any of its ids takes away."""
        if self.expired:
            return False
        ids = IDS_OF[device] if device is not None else frozenset()
        held = False
        for roles, perms, pats in self.grants:
            have = set(perms).union(*(REFERENCE_ROLES[r] for r in roles))
            if perm in have and (device is None or any(fnmatchcase(i, p) for i in ids
                                                       for p in pats)):
                held = True
        for dperm, dpats in self.deny:
            if dperm != perm:
                continue
            if dpats is None or any(fnmatchcase(i, p) for i in ids for p in dpats or ()):
                return False
        return held

    def build(self, name: str) -> PrincipalPolicy:
        now = dt.datetime.now(dt.timezone.utc)
        expires = None if self.expired is None else (
            now - dt.timedelta(days=1) if self.expired else now + dt.timedelta(days=1))
        return PrincipalPolicy(
            name,
            tuple(Grant(tuple(p), tuple(Role(r) for r in roles), tuple(Permission(x) for x in ps))
                  for roles, ps, p in self.grants),
            tuple(Denial(Permission(perm), None if pats is None else tuple(pats))
                  for perm, pats in self.deny),
            self.quota, expires)


grant = st.tuples(st.lists(st.sampled_from(sorted(REFERENCE_ROLES)), max_size=2),
                  st.lists(st.sampled_from(PERMS), max_size=2),
                  st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=2)).filter(
                      lambda g: bool(g[0] or g[1]))
spec = st.builds(
    Spec,
    grants=st.lists(grant, max_size=3),
    deny=st.lists(st.tuples(st.sampled_from(PERMS),
                            st.one_of(st.none(), st.lists(st.sampled_from(PATTERNS),
                                                          min_size=1, max_size=2))), max_size=3),
    quota=st.one_of(st.none(), st.integers(0, 1000)),
    expired=st.sampled_from([None, False, True]),
)


class RbacMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.acl = AccessControl(aliases=resolver, devices=lambda: DEVICES)
        self.model: dict[str, Spec] = {}
        self.used: dict[str, int] = {}

    def _install(self) -> None:
        self.acl.replace_policy(Policy.of(s.build(n) for n, s in self.model.items()))

    @rule(name=st.sampled_from(NAMES), new=spec)
    def set_principal(self, name: str, new: Spec) -> None:
        self.model[name] = new
        self._install()

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def remove_principal(self, data: st.DataObject) -> None:
        del self.model[data.draw(st.sampled_from(sorted(self.model)))]
        self._install()

    @rule(name=st.sampled_from([*NAMES, "mallory"]), perm=st.sampled_from(PERMS),
          device=st.one_of(st.none(), st.sampled_from(DEVICES)), data=st.data())
    def check(self, name: str, perm: str, device: str | None, data: st.DataObject) -> None:
        entry = self.model.get(name)
        expected = entry is not None and entry.allowed(perm, device)
        aliases: tuple[str, ...] = ()
        if device is not None:  # any subset of the other ids, in any order
            others = sorted(IDS_OF[device] - {device})
            aliases = tuple(data.draw(st.permutations(others)))[:data.draw(
                st.integers(0, len(others)))]
        assert self.acl.allowed(name, perm, device, aliases) is expected
        assert self.acl.allowed(name, Permission(perm), device) is expected
        assert (perm in self.acl.permissions(name, device, aliases)) is expected

    @rule(actor=st.sampled_from(NAMES), name=st.sampled_from(["dave", *NAMES]), new=spec)
    def delegate(self, actor: str, name: str, new: Spec) -> None:
        """An update by a principal is accepted only when it gives nobody, on any
        device (all its ids at once), more than the actor holds there."""
        model = {**self.model, name: new}
        proposed = Policy.of(s.build(n) for n, s in model.items())
        if self.acl.escalation_problems(actor, proposed):
            return
        actor_spec = self.model[actor]
        for who, spec_ in model.items():
            if self.model.get(who) == spec_:
                continue
            for device in DEVICES:
                for perm in PERMS:
                    if spec_.allowed(perm, device):
                        assert actor_spec.allowed(perm, device), (actor, who, perm, device)
            if who != actor:
                old = self.model.get(who)
                for device in DEVICES:
                    for perm in PERMS:
                        if old is not None and old.allowed(perm, device):
                            assert actor_spec.allowed(perm, device), (actor, who, perm, device)
        self.acl.replace_policy(proposed, actor=actor)
        self.model = model

    @rule(name=st.sampled_from(NAMES), nbytes=st.integers(0, 600))
    def reserve(self, name: str, nbytes: int) -> None:
        entry = self.model.get(name)
        limit = entry.quota if entry is not None else 0
        used = self.used.get(name, 0)
        ledger = self.acl.ledger(name)
        if limit is not None and used + nbytes > limit:
            with pytest.raises(QuotaExceeded):
                ledger.reserve(nbytes)
        else:
            ledger.reserve(nbytes)
            self.used[name] = used + nbytes

    @precondition(lambda self: any(self.used.values()))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(n for n, u in self.used.items() if u)))
        nbytes = data.draw(st.integers(1, self.used[name]))
        self.acl.ledger(name).release(nbytes)
        self.used[name] -= nbytes

    @invariant()
    def ledgers_match(self) -> None:
        for name, used in self.used.items():
            assert self.acl.ledger(name).used == used


TestRbacMachine = RbacMachine.TestCase
TestRbacMachine.settings = settings(max_examples=120, stateful_step_count=40, deadline=None)
