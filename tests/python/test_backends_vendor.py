"""CUDA and HIP as `exogpu backends` reports them, and CUDA interop where a GPU is.

The reasons are checked through the real command in a fresh process, since
the registry opens each runtime once per process. The interop tests are
parametrised over the CUDA devices found, so they run wherever there is one.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import exogpu
from exogpu import _core


def backends(**env: str) -> dict[str, dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "exogpu", "backends", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    return {b["name"]: b for b in json.loads(out.stdout)}


def loadable(name: str) -> bool:
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def test_a_missing_cuda_driver_is_named_with_the_fix() -> None:
    cuda = backends(EXOGPU_CUDA_LIBRARY="/nonexistent/libcuda.so.1")["cuda"]
    assert cuda["available"] is False
    assert cuda["reason"] == "/nonexistent/libcuda.so.1 not found (install the NVIDIA driver)"
    assert cuda["device_count"] == 0


def test_cuda_reason_on_this_machine() -> None:
    cuda = backends()["cuda"]
    library = os.environ.get("EXOGPU_CUDA_LIBRARY") or "libcuda.so.1"
    if loadable(library):
        assert cuda["available"] or cuda["reason"].startswith(f"{library} found (CUDA driver ")
        assert cuda["runtime_version"].startswith("CUDA driver ")
    else:
        assert cuda == {
            "name": "cuda",
            "available": False,
            "reason": "libcuda.so.1 not found (install the NVIDIA driver)",
            "device_count": 0,
            "runtime_version": "",
            "note": "",
        }


def test_a_library_without_the_driver_entry_points_is_named() -> None:
    cuda = backends(EXOGPU_CUDA_LIBRARY="libm.so.6")["cuda"]
    assert re.fullmatch(
        r"libm\.so\.6 is missing cuInit, cuDriverGetVersion, cuGetErrorName "
        r"and \d+ more entry points \(driver too old\?\)",
        cuda["reason"],
    ), cuda["reason"]


def test_a_missing_hip_runtime_is_named_with_the_fix() -> None:
    hip = backends(EXOGPU_HIP_LIBRARY="/nonexistent/libamdhip64.so")["hip"]
    assert hip["available"] is False
    assert hip["reason"] == "/nonexistent/libamdhip64.so not found (install ROCm)"


def test_the_real_hip_runtime_reports_no_device_here() -> None:
    if not any(loadable(n) for n in ("libamdhip64.so", "libamdhip64.so.6", "libamdhip64.so.5")):
        pytest.skip("no HIP runtime installed (tools/install-deps.sh installs libamdhip64-dev)")
    hip = backends()["hip"]
    assert re.fullmatch(r"HIP runtime \d+\.\d+\.\d+", hip["runtime_version"])
    if hip["available"]:
        assert hip["device_count"] > 0
        return
    assert re.fullmatch(
        r"libamdhip64\.so(\.\d+)? found \(HIP runtime \d+\.\d+\.\d+\), but it reports no device: "
        r"hipGetDeviceCount returned hipErrorNoDevice",
        hip["reason"],
    ), hip["reason"]
    assert hip["device_count"] == 0


def test_only_gpu_devices_can_page_lock_host_memory() -> None:
    with pytest.raises(exogpu.InvalidArgument, match="cpu:0 cannot page-lock host memory"):
        _core.register_host_memory(exogpu.device("cpu:0"), bytearray(64))


def test_host_buffers_have_no_cuda_array_interface() -> None:
    buf = exogpu.device("cpu:0").allocate(16)
    assert not hasattr(buf, "__cuda_array_interface__")


CUDA_DEVICES = [d.id for d in exogpu.all_devices() if d.info.backend == "cuda"]


@pytest.mark.parametrize("device_id", CUDA_DEVICES)
def test_cuda_identity_is_normalised(device_id: str) -> None:
    info = exogpu.device(device_id).info
    assert info.uuid is not None and re.fullmatch(
        r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", info.uuid
    )
    assert info.pci_bus_id is not None and re.fullmatch(
        r"[0-9a-f]{4,}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", info.pci_bus_id
    )
    assert exogpu.device(device_id).memory_info().source == "driver"


@pytest.mark.parametrize("device_id", CUDA_DEVICES)
def test_cuda_buffers_export_dlpack_and_the_array_interface(device_id: str) -> None:
    dev = exogpu.device(device_id)
    data = np.arange(4096, dtype=np.uint8)
    buf = dev.allocate(data.nbytes)
    buf.copy_from(data)
    assert buf.__dlpack_device__() == (2, dev.info.index)
    cai = buf.__cuda_array_interface__
    assert cai["version"] == 3 and cai["shape"] == (4096,) and cai["typestr"] == "|u1"
    assert cai["data"][0] != 0 and cai["data"][1] is False
    capsule = buf.__dlpack__()
    assert type(capsule).__name__ == "PyCapsule"
    del capsule  # never consumed: freed by the capsule's destructor
    # Consumers such as numpy 2 pass every protocol argument, None included.
    capsule = buf.__dlpack__(max_version=(1, 0), dl_device=None, copy=None)
    assert type(capsule).__name__ == "PyCapsule"
    del capsule
    assert type(buf.__dlpack__(dl_device=(2, dev.info.index), copy=False)).__name__ == "PyCapsule"
    with pytest.raises(BufferError, match="exported in place"):
        buf.__dlpack__(copy=True)
    with pytest.raises(BufferError, match="exported only there"):
        buf.__dlpack__(dl_device=(1, 0))
    with pytest.raises(TypeError, match="dl_device must be"):
        buf.__dlpack__(dl_device="cuda")
    cupy = pytest.importorskip("cupy")
    with cupy.cuda.Device(dev.info.index):
        view = cupy.from_dlpack(buf)
        assert view.data.ptr == cai["data"][0]  # zero-copy
        assert np.array_equal(cupy.asnumpy(view), data)
        view[:16] = 7  # writes through to exogpu's memory
        cupy.cuda.runtime.deviceSynchronize()
    assert np.array_equal(buf.to_numpy()[:16], np.full(16, 7, np.uint8))


@pytest.mark.parametrize("device_id", CUDA_DEVICES)
def test_registered_host_memory_round_trips(device_id: str) -> None:
    dev = exogpu.device(device_id)
    host = np.random.default_rng(4).integers(0, 256, 1 << 20, dtype=np.uint8)
    with _core.register_host_memory(dev, host) as pinned:
        assert pinned.active and pinned.nbytes == host.nbytes
        buf = dev.allocate(host.nbytes)
        buf.copy_from(host)
        assert np.array_equal(buf.to_numpy(), host)
    assert not pinned.active
