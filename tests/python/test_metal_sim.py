"""The Metal backend from Python, on the simulated Metal (tests/cpp/sim_metal).

The device tests run when the package has the Metal backend and
EXOGPU_METAL_LIBRARY points at libsim_metal.so (tools/test.sh's run beside
the simulated devices); what the backend says of itself is checked always.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import exogpu


def metal_status() -> exogpu.BackendInfo:
    return next(b for b in exogpu.backends() if b.name == "metal")


on_sim = pytest.mark.skipif(
    not (metal_status().available and "sim_metal" in os.environ.get("EXOGPU_METAL_LIBRARY", "")),
    reason="needs the Metal backend and EXOGPU_METAL_LIBRARY=.../libsim_metal.so",
)


def test_metal_says_it_has_only_met_a_simulation() -> None:
    row = metal_status().to_dict()
    assert row["note"] == (
        "tested against a simulated Metal device only; it has not yet run on Apple hardware"
    )
    if not row["available"]:
        # Never the untrue "built only on macOS": what is missing, in words.
        assert "built only on macOS" not in row["reason"]
        assert "Metal" in row["reason"]
    others = [b for b in exogpu.backends() if b.name != "metal"]
    assert all(b.note == "" for b in others)


@on_sim
def test_the_two_simulated_devices() -> None:
    unified = exogpu.device("metal:0")
    discrete = exogpu.device("metal:1")
    assert unified.info.kind == "integrated" and unified.info.unified_memory
    assert discrete.info.kind == "discrete" and not discrete.info.unified_memory
    assert metal_status().device_count == 2


@on_sim
def test_unified_memory_is_zero_copy_and_private_memory_is_staged() -> None:
    data = np.random.default_rng(3).integers(0, 256, 1 << 20, dtype=np.uint8)
    shared = exogpu.device("metal:0").allocate(data.size)
    shared.copy_from(data)
    view = np.from_dlpack(shared)
    view[:3] = [1, 2, 3]  # lands in the MTLBuffer itself
    np.testing.assert_array_equal(shared.to_numpy()[:3], [1, 2, 3])

    private = exogpu.device("metal:1").allocate(data.size)
    assert not private.host_addressable
    private.copy_from(data)
    np.testing.assert_array_equal(private.to_numpy(), data)
    with pytest.raises((BufferError, exogpu.Error)):  # no CPU view of private storage
        np.from_dlpack(private)


def run_cli(*args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "exogpu", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "EXOGPU_BACKENDS": "cpu,metal"},
    )
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


@on_sim
def test_plan_measures_the_simulated_devices_through_the_fma_kernel() -> None:
    profile = run_cli("profile", "--quick", "--json")
    details = {d["id"]: d for d in profile["details"]}
    for device_id in ("metal:0", "metal:1"):
        entry = details[device_id]
        assert entry["fma_supported"], entry
        assert entry["flops"] > 0 and entry["d2d_bandwidth"] > 0, entry
        assert entry["h2d_bandwidth"] > 0 and entry["d2h_bandwidth"] > 0, entry
    plan = run_cli("plan", "--model", "llama-3-8b", "--dtype", "int4", "--json")
    planned = {d["id"] for d in plan["cluster"]["devices"]}
    assert {"metal:0", "metal:1"} <= planned, plan["cluster"]
