"""Memory never passes between principals: stale views, pool reuse, foreign buffers,
raw exports. Run on every device the registry finds (the simulated ones too)."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import exogpu
from exogpu.security import AccessControl, PermissionDenied, Session, parse_policy

POLICY = """
[[principals]]
name = "alice"
roles = ["user"]
devices = ["*"]

[[principals]]
name = "bob"
roles = ["user"]
devices = ["*"]
"""
N = 4096


def _sessions() -> tuple[Session, Session]:
    acl = AccessControl(parse_policy(POLICY))
    return Session("alice", acl), Session("bob", acl)


def test_stale_view_never_sees_the_next_principal(device: exogpu.Device) -> None:
    alice, bob = _sessions()
    g = alice.allocate(device.id, N)
    alice.copy(g, np.full(N, 7, np.uint8))
    try:
        view = np.from_dlpack(g)
    except BufferError:
        pytest.skip(f"{device.id} memory is not host-addressable")
    live = device.pool.stats()["live_buffers"]
    g.free()
    assert alice.quota_used == 0
    assert device.pool.stats()["live_buffers"] == live  # still held by the view
    h = bob.allocate(device.id, N)
    out = np.empty(N, np.uint8)
    bob.copy(out, h)
    assert not out.any(), "a new allocation shows old bytes"
    bob.copy(h, np.full(N, 9, np.uint8))
    assert (view == 7).all(), "alice's stale view sees bob's bytes"
    del view
    gc.collect()
    assert device.pool.stats()["live_buffers"] == live  # alice's block back, bob's live
    h.free()


def test_foreign_buffers_and_raw_exports_are_refused(device: exogpu.Device) -> None:
    alice, bob = _sessions()
    h = bob.allocate(device.id, N)
    with pytest.raises(PermissionDenied, match="belongs to 'bob'"):
        alice.copy(np.empty(N, np.uint8), h)
    with pytest.raises(PermissionDenied, match="belongs to 'bob'"):
        alice.free(h)
    with pytest.raises(PermissionDenied, match="belongs to 'bob'"):
        alice.export_dlpack(h)
    assert not h.freed
    with pytest.raises(BufferError, match="only through the GuardedBuffer"):
        h._buf.__dlpack__()
    with pytest.raises(BufferError, match="only through the GuardedBuffer"):
        h._buf._export_dlpack(object())
    h.free()
