"""Memory never passes between principals: stale views, pool reuse, foreign buffers,
raw exports. Run on every device the registry finds (the simulated ones too)."""

from __future__ import annotations

import ctypes
import gc

import numpy as np
import pytest

import exogpu
from exogpu.security import AccessControl, GuardedBuffer, PermissionDenied, Session, parse_policy

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


def _dlpack_device_type(buffer: GuardedBuffer) -> int:
    """1 for host memory, 2 for CUDA, 10 for ROCm; skips memory with no DLPack export."""
    try:
        return buffer.__dlpack_device__()[0]
    except BufferError as e:
        pytest.skip(str(e))


def _exported_address(capsule: object) -> int:
    """The data pointer of an unconsumed DLPack capsule (DLManagedTensor's first field)."""
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    managed = get(capsule, b"dltensor")
    return int(ctypes.c_void_p.from_address(managed).value or 0)


def test_stale_device_export_never_sees_the_next_principal(device: exogpu.Device) -> None:
    """Device memory (CUDA, ROCm) exported through DLPack: while the export lives, the
    memory is not handed to the next principal, whose allocation starts zeroed."""
    alice, bob = _sessions()
    g = alice.allocate(device.id, N)
    if _dlpack_device_type(g) == 1:
        pytest.skip(f"{device.id} exports host memory (see the host-view test)")
    alice.copy(g, np.full(N, 7, np.uint8))
    capsule = g.__dlpack__()
    held = _exported_address(capsule)
    live = device.pool.stats()["live_buffers"]
    g.free()
    assert alice.quota_used == 0
    assert device.pool.stats()["live_buffers"] == live  # still held by the export
    h = bob.allocate(device.id, N)
    assert _exported_address(h.__dlpack__()) != held, "bob was given alice's exported memory"
    out = np.empty(N, np.uint8)
    bob.copy(out, h)
    assert not out.any(), "a new allocation shows old bytes"
    del capsule
    gc.collect()
    assert device.pool.stats()["live_buffers"] == live  # alice's block back, bob's live
    h.free()


def test_stale_view_never_sees_the_next_principal(device: exogpu.Device) -> None:
    alice, bob = _sessions()
    g = alice.allocate(device.id, N)
    alice.copy(g, np.full(N, 7, np.uint8))
    if _dlpack_device_type(g) != 1:
        pytest.skip(f"{device.id} exports device memory (see the device-export test)")
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
