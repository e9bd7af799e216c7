"""numpy and DLPack interop, and the error hierarchy."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import exogpu


def host_devices() -> list[exogpu.Device]:
    return [d for d in exogpu.all_devices() if d.allocate(1).host_addressable]


@pytest.mark.parametrize("dev", host_devices(), ids=lambda d: d.id)
def test_from_dlpack_is_zero_copy_and_keeps_the_buffer_alive(dev: exogpu.Device) -> None:
    buf = dev.allocate(4096)
    buf.copy_from(np.arange(4096, dtype=np.uint32).view(np.uint8)[:4096])
    view = np.from_dlpack(buf)
    assert view.dtype == np.uint8 and view.shape == (4096,)
    view[:4] = [9, 8, 7, 6]  # writes land in device memory: zero-copy
    np.testing.assert_array_equal(buf.to_numpy()[:4], [9, 8, 7, 6])
    ref = weakref.ref(buf)
    del buf
    gc.collect()
    assert ref() is not None, "the numpy view must keep the buffer alive"
    assert view[0] == 9
    del view
    gc.collect()
    assert ref() is None
    assert exogpu.Buffer.__dlpack_device__(dev.allocate(8)) == (1, 0)


def test_error_hierarchy() -> None:
    assert issubclass(exogpu.OutOfMemory, exogpu.Error)
    assert issubclass(exogpu.OutOfMemory, MemoryError)
    assert issubclass(exogpu.InvalidArgument, exogpu.Error)
    assert issubclass(exogpu.InvalidArgument, ValueError)
    assert issubclass(exogpu.BackendUnavailable, exogpu.Error)
    assert issubclass(exogpu.DeviceError, exogpu.Error)
    assert exogpu.OutOfMemory.__module__ == "exogpu"


def test_unknown_device_names_the_devices_there_are() -> None:
    with pytest.raises(exogpu.InvalidArgument, match=r"no device 'cuda:7' here \(devices: .*cpu:0"):
        exogpu.device("cuda:7")


def test_host_buffer_view() -> None:
    host = exogpu.device("cpu:0").allocate_host(1 << 16)
    view = host.view()
    view[:] = 5
    assert host.nbytes == 1 << 16 and int(view.sum()) == 5 << 16
