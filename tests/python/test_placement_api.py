"""The Python API and the `place` / `plan` commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import exogpu
from exogpu import cluster, models
from exogpu.placement import Placement, PlacementInfeasible, Problem, evaluate, solve

ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = ROOT / "benchmarks" / "clusters"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exogpu", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def lab_problem(objective_context: int = 0) -> Problem:
    return Problem.from_model(
        models.get("llama-3-70b"),
        cluster.Cluster.from_file(CLUSTERS / "lab-3-nodes.json"),
        context_tokens=objective_context,
        memory_headroom=0.1,
    )


def test_problem_round_trips_through_json(tmp_path: Path) -> None:
    problem = lab_problem(4096)
    again = Problem.from_json(problem.to_json())
    assert again == problem
    path = tmp_path / "problem.json"
    path.write_text(json.dumps(problem.to_json()))
    assert solve(path).to_json()["stages"] == solve(problem).to_json()["stages"]
    assert solve(str(path)).value == solve(problem.to_json()).value


def test_llama_70b_on_lab_cluster_is_proven_and_beats_exo() -> None:
    problem = lab_problem(4096)
    for objective in ("throughput", "latency", "memory"):
        best = solve(problem, objective)
        assert best.optimal and best.feasible
        assert best.lower_bound == best.value
        assert sum(s.memory_bytes for s in best.stages) == problem.total_resident_bytes()
    best = solve(problem, "throughput")
    exo = solve(problem, "throughput", strategy="exo-memory-weighted")
    if exo.feasible:
        assert best.bottleneck <= exo.bottleneck
    again = evaluate(problem, [(s.device, s.first_layer, s.last_layer) for s in best.stages])
    assert again.bottleneck == best.bottleneck


def test_infeasible_says_bytes() -> None:
    problem = Problem.from_model(
        models.get("llama-3.1-405b"), cluster.Cluster.from_file(CLUSTERS / "home-mixed.json")
    )
    with pytest.raises(PlacementInfeasible) as info:
        solve(problem)
    assert isinstance(info.value, exogpu.InvalidArgument)
    needed = problem.total_resident_bytes()
    assert f"needs {needed} bytes" in str(info.value)
    held = sum(d.memory_bytes for d in problem.devices)
    assert f"hold {held} bytes" in str(info.value)


def test_replan_after_a_device_leaves_reports_moves() -> None:
    problem = lab_problem()
    first = solve(problem)
    gone = first.stages[-1].device
    data = problem.to_json()
    data["devices"] = [d for d in data["devices"] if d["id"] != gone]
    data["links"] = [x for x in data["links"] if gone not in (x["a"], x["b"])]
    with pytest.raises(exogpu.InvalidArgument, match="unknown device"):
        solve(data, previous=first.to_json())  # the device that left must be named
    again = solve(data, previous=first.to_json(), departed=[gone])
    moved = again.to_json()["moved_layers"]
    before, after = first.layer_devices(), again.layer_devices()
    assert moved == [i for i, (x, y) in enumerate(zip(before, after, strict=False)) if x != y]
    # every layer of the device that left moves
    assert set(range(first.stages[-1].first_layer, first.stages[-1].last_layer + 1)) <= set(moved)
    # replanning keeps the optimum
    assert again.value == pytest.approx(solve(data).value, rel=1e-12)


def test_placement_from_json_round_trip() -> None:
    out = solve(lab_problem()).to_json()
    assert Placement.from_json(out).to_json()["stages"] == out["stages"]


def test_bad_arguments() -> None:
    with pytest.raises(exogpu.InvalidArgument, match="objective"):
        solve(lab_problem(), objective="speed")
    with pytest.raises(exogpu.InvalidArgument, match="strategy"):
        solve(lab_problem(), strategy="random")
    with pytest.raises(exogpu.InvalidArgument, match="cannot read problem file"):
        solve("/nonexistent/problem.json")


def test_cli_place_json(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(lab_problem().to_json()))
    run = cli("place", "--problem", str(path), "--objective", "latency", "--json")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["objective"] == "latency" and out["optimal"] is True
    assert out["value"] == pytest.approx(solve(path, "latency").value, rel=1e-12)
    table = cli("place", "--problem", str(path))
    assert table.returncode == 0 and "proven optimal" in table.stdout


def test_cli_plan_here_int4() -> None:
    run = cli("plan", "--model", "llama-3-8b", "--dtype", "int4", "--json")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["placement"]["feasible"] and out["placement"]["optimal"]
    assert out["placement"]["tokens_per_second"] > 0
    assert set(out["baselines"]) == {"exo-memory-weighted", "free-memory-proportional"}
    table = cli("plan", "--model", "llama-3-8b", "--dtype", "int4")
    assert table.returncode == 0 and "tokens/s" in table.stdout


def test_cli_plan_too_big_is_a_clean_error() -> None:
    run = cli("plan", "--model", "deepseek-v3", "--cluster", str(CLUSTERS / "home-mixed.json"))
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    assert "no placement fits" in run.stderr and "bytes" in run.stderr


def test_discovered_cluster_marks_its_sources() -> None:
    here = cluster.discover()
    assert here.devices
    for d in here.devices:
        assert d.speed_source in ("table", "estimate")
        assert d.memory_bytes == exogpu.device(d.id).memory_info().total
    measured = here.with_profile({"devices": {here.devices[0].id: {"flops": 1.5e11}}})
    assert measured.devices[0].flops == 1.5e11 and measured.devices[0].speed_source == "measured"


def test_cluster_toml_equals_json(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text(
        "[default_link]\nbandwidth = 1.25e9\nlatency = 2e-4\n\n"
        '[[devices]]\nid = "a"\nnode = "n"\nmemory_bytes = 1000\n'
        "flops = 1e12\nmemory_bandwidth = 1e11\n"
    )
    c = cluster.Cluster.from_file(toml)
    assert c.devices[0].memory_bytes == 1000 and c.default_link["bandwidth"] == 1.25e9
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "devices": [{"id": "a", "memory_bytes": 1, "flops": -1, "memory_bandwidth": 1}],
                "default_link": {"bandwidth": 1, "latency": 0},
            }
        )
    )
    with pytest.raises(exogpu.InvalidArgument, match=r"devices\[0\]\.flops"):
        cluster.Cluster.from_file(bad)


def test_cli_plan_thermal_down_weights_a_hot_device(tmp_path: Path) -> None:
    def plan(cpu_millidegrees: int) -> dict[str, Any]:
        zone = tmp_path / str(cpu_millidegrees) / "class" / "thermal" / "thermal_zone0"
        zone.mkdir(parents=True)
        (zone / "type").write_text("x86_pkg_temp\n")
        (zone / "temp").write_text(f"{cpu_millidegrees}\n")
        run = subprocess.run(
            [sys.executable, "-m", "exogpu", "plan", "--model", "llama-3-8b", "--dtype", "int4",
             "--no-measure", "--thermal", "--json"],
            capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "EXOGPU_BACKENDS": "cpu",
                 "EXOGPU_SYSFS_ROOT": str(zone.parents[2]),
                 "EXOGPU_NVML_LIBRARY": "/nonexistent/libnvidia-ml.so.1",
                 "EXOGPU_ROCM_SMI_LIBRARY": "/nonexistent/librocm_smi64.so.1"},
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        out: dict[str, Any] = json.loads(run.stdout)
        return out

    cool, hot = plan(45_000), plan(95_000)
    assert cool["thermal"] == {"cpu:0": {"state": "normal", "weight": 1.0}}
    assert hot["thermal"] == {"cpu:0": {"state": "hot", "weight": 0.75}}
    # One device, bound by its own speed: the hot plan's step takes 1/0.75 as long.
    assert hot["placement"]["value"] == pytest.approx(cool["placement"]["value"] / 0.75, rel=0.01)
    refused = cli("plan", "--model", "llama-3-8b", "--cluster", str(CLUSTERS / "home-mixed.json"),
                  "--thermal")  # fmt: skip
    assert refused.returncode == 2 and "cannot judge a cluster file" in refused.stderr


def test_version_1_files_load_and_version_2_fields_need_version_2() -> None:
    problem = lab_problem(4096)
    v2 = problem.to_json()
    assert v2["version"] == 2
    v1 = json.loads(json.dumps(v2))
    v1["version"] = 1
    for x in v1["layers"]:
        x.pop("read_bytes_per_token", None)
    old = Problem.from_json(v1)
    assert all(x.read_bytes_per_token is None for x in old.layers)
    del v1["version"]  # a file from before versions is version 1
    assert Problem.from_json(v1) == old
    v1["layers"][0]["read_bytes_per_token"] = 5
    with pytest.raises(exogpu.InvalidArgument, match="read_bytes_per_token"):
        Problem.from_json(v1)
    v2["version"] = 3
    with pytest.raises(exogpu.InvalidArgument, match="version"):
        Problem.from_json(v2)


def test_single_stream_and_pipeline_rates_are_both_reported() -> None:
    problem = Problem.from_model(
        models.get("llama-3-70b"),
        cluster.Cluster.from_file(CLUSTERS / "home-mixed.json"),
        dtype="int4",
        memory_headroom=0.1,
    )
    r = solve(problem, "throughput")
    out = r.to_json()
    assert out["single_stream_tokens_per_second"] == pytest.approx(1 / r.latency)
    assert out["pipeline_tokens_per_second"] == pytest.approx(1 / r.bottleneck)
    assert out["requests_in_flight"] == len(r.stages)
    if len(r.stages) > 1:
        assert out["single_stream_tokens_per_second"] < out["pipeline_tokens_per_second"]
    run = cli("plan", "--model", "llama-3-70b", "--dtype", "int4", "--cluster",
              str(CLUSTERS / "home-mixed.json"))  # fmt: skip
    assert run.returncode == 0, run.stderr
    text = " ".join(run.stdout.split())
    assert "single stream" in text and "pipeline" in text and "in flight" in text
