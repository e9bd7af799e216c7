"""The Vulkan backend as Python sees it: identity and sizes agree with
vulkaninfo, lavapipe folds into cpu:0 yet stays usable as vulkan:N, and both
transfer paths (mapped and staged) run clean under the validation layer."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import exogpu

PYTHON_DIR = str(Path(exogpu.__file__).resolve().parent.parent)


def _vulkan_devices() -> list[exogpu.Device]:
    return [d for d in exogpu.all_devices() if d.info.backend == "vulkan"]


def _vulkan_status() -> exogpu.BackendInfo | None:
    return next((b for b in exogpu.backends() if b.name == "vulkan"), None)


pytestmark = pytest.mark.skipif(
    not _vulkan_devices(),
    reason=f"no Vulkan device: {getattr(_vulkan_status(), 'reason', 'backend not built')}",
)

needs_vulkaninfo = pytest.mark.skipif(
    shutil.which("vulkaninfo") is None, reason="vulkaninfo is not installed"
)


def _vulkaninfo_json(tmp_path: Path, index: int) -> dict[str, Any]:
    # vulkaninfo --json writes VP_VULKANINFO_<name>.json into the working directory.
    subprocess.run(["vulkaninfo", f"--json={index}"], cwd=tmp_path, capture_output=True, check=True)
    (path,) = tmp_path.glob("VP_VULKANINFO_*.json")
    data: dict[str, Any] = json.loads(path.read_text())
    path.unlink()
    return data


def _vulkaninfo_gpu_count() -> int:
    text = subprocess.run(
        ["vulkaninfo", "--summary"], capture_output=True, text=True, check=True
    ).stdout
    return len(re.findall(r"^GPU\d+:$", text, re.MULTILINE))


def _vulkaninfo_heaps() -> list[list[tuple[int, bool]]]:
    """Per GPU: (size, device-local) of each memory heap, from the text report."""
    text = subprocess.run(
        ["vulkaninfo", "--text"], capture_output=True, text=True, check=True
    ).stdout
    gpus: list[list[tuple[int, bool]]] = []
    heap: list[Any] | None = None  # [size, device_local] of the heap being read
    for line in text.splitlines():
        stripped = line.strip()
        if re.fullmatch(r"GPU\d+:", line):
            gpus.append([])
            heap = None
        elif re.fullmatch(r"memoryHeaps\[\d+\]:", stripped) and gpus:
            heap = [0, False]
            gpus[-1].append((0, False))
        elif heap is not None and (m := re.fullmatch(r"size\s*=\s*(\d+).*", stripped)):
            heap[0] = int(m.group(1))
            gpus[-1][-1] = (heap[0], heap[1])
        elif heap is not None and stripped == "MEMORY_HEAP_DEVICE_LOCAL_BIT":
            heap[1] = True
            gpus[-1][-1] = (heap[0], heap[1])
        elif stripped.startswith("memoryTypes"):
            heap = None
    return gpus


@needs_vulkaninfo
def test_identity_and_sizes_agree_with_vulkaninfo(tmp_path: Path) -> None:
    reports = [_vulkaninfo_json(tmp_path, i) for i in range(_vulkaninfo_gpu_count())]
    heaps = _vulkaninfo_heaps()
    by_uuid = {}
    for i, report in enumerate(reports):
        props = report["capabilities"]["device"]["properties"]
        uuid_bytes = props["VkPhysicalDeviceIDProperties"]["deviceUUID"]
        hex_ = bytes(uuid_bytes).hex()
        uuid = f"{hex_[:8]}-{hex_[8:12]}-{hex_[12:16]}-{hex_[16:20]}-{hex_[20:]}"
        by_uuid[uuid] = (props["VkPhysicalDeviceProperties"], heaps[i])
    for device in _vulkan_devices():
        props, gpu_heaps = by_uuid[device.info.uuid or ""]
        assert device.info.name == props["deviceName"]
        kinds = {
            "VK_PHYSICAL_DEVICE_TYPE_CPU": "cpu",
            "VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU": "discrete",
            "VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU": "integrated",
        }
        assert device.info.kind == kinds.get(props["deviceType"], "virtual")
        # memory_total is the largest device-local heap.
        assert device.info.memory_total == max(s for s, local in gpu_heaps if local)
        assert device.memory_info().total == device.info.memory_total


@needs_vulkaninfo
def test_loader_version_agrees_with_vulkaninfo() -> None:
    text = subprocess.run(
        ["vulkaninfo", "--summary"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"Vulkan Instance Version:\s*(\d+\.\d+\.\d+)", text)
    assert match is not None
    status = _vulkan_status()
    assert status is not None and status.available
    assert status.runtime_version == match.group(1)
    assert status.device_count == len(_vulkan_devices())


def test_cpu_driver_is_an_alias_of_the_host_cpu_and_usable_by_its_own_id() -> None:
    for device in _vulkan_devices():
        info = device.info
        assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", info.uuid or "")
        if info.kind != "cpu":
            continue
        assert info.emulated_on_host and info.unified_memory
        assert info.id in exogpu.device("cpu:0").info.aliases
        assert info.id not in [d.id for d in exogpu.devices()]
        assert exogpu.device(info.id).id == info.id
        data = np.random.default_rng(1).integers(0, 256, 100_003, dtype=np.uint8)
        with exogpu.device(info.id).allocate(data.nbytes) as buf:
            buf.copy_from(data)
            assert np.array_equal(buf.to_numpy(), data)


def test_memory_source_is_budget_or_a_declared_estimate() -> None:
    for device in _vulkan_devices():
        memory = device.memory_info()
        assert memory.source in ("budget", "estimate")
        assert 0 < memory.free <= memory.total


def test_out_of_memory_names_the_device_and_the_request() -> None:
    device = _vulkan_devices()[0]
    request = device.info.memory_total + 1
    with pytest.raises(exogpu.OutOfMemory, match=re.escape(device.id)) as caught:
        device.allocate_unpooled(request)
    assert str(request) in str(caught.value)
    assert isinstance(caught.value, MemoryError)


# Runs in a child process so that the validation layer and the transfer path
# are set for the backend from the start, whatever this process was given.
_CHILD = textwrap.dedent(
    """
    import numpy as np, exogpu
    dev = exogpu.device("vulkan:0")
    rng = np.random.default_rng(7)
    for n in (1, 4095, 4 << 20, (9 << 20) + 3):
        data = rng.integers(0, 256, n, dtype=np.uint8)
        buf = dev.allocate(n + 5)
        buf.copy_from(data, offset=5)
        out = np.empty(n, np.uint8)
        buf.copy_to(out, offset=5)
        assert np.array_equal(out, data), n
    a, b = dev.allocate(10_000), dev.allocate(10_000)
    a.fill(0x11)
    a.fill(0xAB, offset=3, nbytes=997)
    exogpu.copy(b, a)
    expected = np.full(10_000, 0x11, np.uint8)
    expected[3:1000] = 0xAB
    assert np.array_equal(b.to_numpy(), expected)
    s = dev.stream()
    e0 = s.record()
    b.fill(0, stream=s)
    e1 = s.record()
    s.synchronize()
    assert e0.elapsed_ms(e1) >= 0.0
    print("host_addressable", a.host_addressable)
    """
)


@pytest.mark.parametrize("mapped", ["1", "0"])
def test_both_transfer_paths_run_clean_under_validation(mapped: str) -> None:
    env = dict(os.environ)
    env.update(
        EXOGPU_VULKAN_VALIDATION="1",
        EXOGPU_VULKAN_HOST_MAPPED=mapped,
        PYTHONPATH=PYTHON_DIR + os.pathsep + env.get("PYTHONPATH", ""),
    )
    result = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "validation" not in result.stderr, result.stderr
    lavapipe = _vulkan_devices()[0].info.kind in ("cpu", "integrated")
    if mapped == "0":
        assert "host_addressable False" in result.stdout
    elif lavapipe:
        assert "host_addressable True" in result.stdout


def test_a_bad_setting_makes_the_backend_unavailable_with_the_reason() -> None:
    env = dict(os.environ)
    env.update(
        EXOGPU_VULKAN_VALIDATION="perhaps",
        PYTHONPATH=PYTHON_DIR + os.pathsep + env.get("PYTHONPATH", ""),
    )
    code = (
        "import exogpu; b = [x for x in exogpu.backends() if x.name == 'vulkan'][0];"
        "print(b.available, b.reason)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("False")
    assert "EXOGPU_VULKAN_VALIDATION=perhaps" in result.stdout
