"""Shared memory from the registry to the plan: the devices whose memory is
the host's (the CPU, CPU drivers of GPU APIs, integrated and unified-memory
GPUs) share the host pool of the host's physical memory, discovery carries
it into the cluster, and a plan never counts that RAM twice."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

import exogpu
from exogpu import cluster
from exogpu.cli import main
from exogpu.placement import PlacementInfeasible, Problem, solve


def test_the_host_pool_holds_every_device_on_host_memory() -> None:
    cpu = exogpu.device("cpu:0").info
    assert cpu.memory_pool == "host"
    assert cpu.memory_pool_bytes == cpu.memory_total > 0
    assert cpu.to_dict()["memory_pool"] == "host"
    for dev in exogpu.devices():
        for device_id in (dev.id, *dev.info.aliases):
            info = exogpu.device(device_id).info
            if info.unified_memory:
                assert (info.memory_pool, info.memory_pool_bytes) == ("host", cpu.memory_total)
            else:  # a discrete GPU (the simulated CUDA and HIP ones in CI)
                assert info.memory_pool is None and info.memory_pool_bytes == 0
                assert info.to_dict()["memory_pool"] is None


def test_discovery_names_the_pool_per_node() -> None:
    found = cluster.discover(node="mac")
    cpu = next(d for d in found.devices if d.id == "cpu:0")
    assert cpu.memory_pool == "mac/host"
    assert found.memory_pools == {"mac/host": exogpu.device("cpu:0").info.memory_pool_bytes}
    for d in found.devices:
        info = exogpu.device(d.id).info
        assert (d.memory_pool is not None) == info.unified_memory
    # and the contract reads it back
    again = cluster.Cluster.from_json(found.to_json())
    assert again.memory_pools == found.memory_pools
    assert socket.gethostname()  # the default node name is the host's


def mac(pool: int | None) -> dict[str, Any]:
    """A Mac: the GPU may use 48 GiB of the 64 GiB both share."""
    gib = 2**30
    devices: list[dict[str, Any]] = [
        {"id": "cpu:0", "node": "mac", "memory_bytes": 64 * gib, "flops": 1e12,
         "memory_bandwidth": 1.0e11},
        {"id": "metal:0", "node": "mac", "memory_bytes": 48 * gib, "flops": 2.7e13,
         "memory_bandwidth": 4.0e11},
    ]
    out: dict[str, Any] = {
        "devices": devices,
        "default_link": {"bandwidth": 1.25e9, "latency": 2e-4},
        "intra_node_link": {"bandwidth": 1e11, "latency": 1e-6},
    }
    if pool is not None:
        for d in devices:
            d["memory_pool"] = "mac/host"
        out["memory_pools"] = {"mac/host": pool}
    return out


def model(total_gib: float, layers: int = 40) -> list[dict[str, Any]]:
    size = int(total_gib * 2**30 / layers)
    return [
        {"name": f"l{i}", "weight_bytes": size, "flops_per_token": 2.0 * size,
         "activation_bytes": 16384}
        for i in range(layers)
    ]


def test_a_mac_holds_no_more_than_its_memory() -> None:
    # 80 GiB fits 64 + 48 GiB counted apart, not the 64 GiB they share.
    apart = Problem.from_json({"version": 2, "layers": model(80), **mac(None)})
    assert solve(apart, "latency").feasible
    shared = Problem.from_json({"version": 2, "layers": model(80), **mac(64 * 2**30)})
    with pytest.raises(PlacementInfeasible, match="counted once"):
        solve(shared, "latency")
    # 56 GiB fits: as much on the fast GPU as the pool leaves room for.
    fits = Problem.from_json({"version": 2, "layers": model(56), **mac(64 * 2**30)})
    plan = solve(fits, "latency")
    assert plan.optimal
    assert sum(s.memory_bytes for s in plan.stages) <= 64 * 2**30
    on_gpu = sum(s.memory_bytes for s in plan.stages if s.device == "metal:0")
    assert on_gpu > 40 * 2**30  # the GPU takes what it can


def test_cli_plan_on_a_shared_memory_cluster_file(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "mac.json"
    path.write_text(json.dumps(mac(64 * 2**30)))
    assert main(["plan", "--model", "llama-3-8b", "--cluster", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cluster"]["memory_pools"] == {"mac/host": 64 * 2**30}
    assert out["placement"]["feasible"] is True


def test_cli_plan_offloads_to_disk_only_when_asked(tmp_path: Path, capsys: Any) -> None:
    # 16 GiB of llama-3-8b on a 12 GiB device that reads its disk at 2 GB/s.
    gib = 2**30
    path = tmp_path / "small.json"
    path.write_text(json.dumps({
        "devices": [{"id": "gpu", "node": "pc", "memory_bytes": 12 * gib, "flops": 5e13,
                     "memory_bandwidth": 5e11, "disk_read_bandwidth": 2e9}],
        "default_link": {"bandwidth": 1.25e9, "latency": 2e-4},
    }))  # fmt: skip
    args = ["plan", "--model", "llama-3-8b", "--cluster", str(path), "--json"]
    assert main(args) == 2  # does not fit
    assert "no placement fits" in " ".join(capsys.readouterr().err.split())
    assert main([*args, "--allow-disk-offload"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["allow_disk_offload"] is True
    (stage,) = out["placement"]["stages"]
    usable = int(0.9 * 12 * gib)
    assert stage["offloaded_bytes"] == stage["memory_bytes"] - usable
    assert stage["time"] > stage["offloaded_bytes"] / 2e9  # the disk reads dominate
    data = json.loads(path.read_text())
    del data["devices"][0]["disk_read_bandwidth"]
    path.write_text(json.dumps(data))
    assert main([*args, "--allow-disk-offload"]) == 2
    assert "exogpu profile" in " ".join(capsys.readouterr().err.split())
