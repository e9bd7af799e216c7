"""numpy and DLPack interop, and the error hierarchy."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

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
    # The view holds the memory itself, not the Python object: freed and
    # collected, the buffer's block stays out of the pool until the view goes.
    live = dev.pool.stats()["live_buffers"]
    ref = weakref.ref(buf)
    buf.free()
    del buf
    gc.collect()
    assert ref() is None
    assert dev.pool.stats()["live_buffers"] == live, "the view must keep the memory alive"
    assert view[0] == 9
    del view
    gc.collect()
    assert dev.pool.stats()["live_buffers"] == live - 1
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


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="needs Linux /proc/meminfo")
def test_cpu_free_memory_comes_from_the_os_even_with_drivers_loaded() -> None:
    exogpu.all_devices()  # every backend opened (a driver may change the locale)
    memory = exogpu.device("cpu:0").memory_info()
    fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    available = int(fields["MemAvailable"].split()[0]) * 1024
    assert memory.source == "os"
    assert abs(memory.free - available) < 0.1 * memory.total
