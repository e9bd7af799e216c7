"""The native search against the brute-force oracle on hundreds of random
small problems: equal optimal values, feasible placements, the contract's
tie-breaks, and every reported figure recomputed from the contract."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

import exogpu
from exogpu.placement import PlacementInfeasible, solve
from placement_oracle import all_placements, price, value

OBJECTIVES = ("latency", "throughput", "memory")


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)


def random_problem(rng: random.Random, n_devices: int, n_layers: int) -> dict[str, Any]:
    nodes = [f"node{i}" for i in range(rng.randint(1, 3))]
    devices: list[dict[str, Any]] = []
    for i in range(n_devices):
        if devices and rng.random() < 0.3:  # a twin of the previous device
            devices.append({**devices[-1], "id": f"d{i}"})
            continue
        devices.append(
            {
                "id": f"d{i}",
                "node": rng.choice(nodes),
                "memory_bytes": rng.randint(500, 5000),
                "flops": float(rng.randint(100, 1000)),
                "memory_bandwidth": float(rng.randint(200, 3000)),
            }
        )
    layers = [
        {
            "name": f"l{i}",
            "weight_bytes": rng.randint(50, 1200),
            "kv_bytes_per_token": rng.randint(0, 3),
            "flops_per_token": float(rng.randint(0, 2000)),
            "activation_bytes": rng.randint(1, 100),
        }
        for i in range(n_layers)
    ]
    ids = [d["id"] for d in devices]
    links = []
    for a, b in [(a, b) for i, a in enumerate(ids) for b in ids[i + 1 :]]:
        if rng.random() < 0.3:
            links.append(
                {
                    "a": a,
                    "b": b,
                    "bandwidth": float(rng.randint(10, 500)),
                    "latency": rng.random() * 0.3,
                }
            )
    if rng.random() < 0.5:  # version 2: layers that stream less than they hold
        for x in layers:
            if rng.random() < 0.5:
                x["read_bytes_per_token"] = rng.randint(0, x["weight_bytes"])
    problem: dict[str, Any] = {
        "version": 2,
        "layers": layers,
        "devices": devices,
        "links": links,
        "default_link": {"bandwidth": 50.0, "latency": 0.25},
        "workload": {"batch": rng.randint(1, 3), "context_tokens": rng.randint(0, 40)},
        "constraints": {
            "memory_headroom": rng.choice([0.0, 0.0, 0.1, 0.25]),
            "fixed_order": rng.random() < 0.25,
            "ring": rng.random() < 0.3,
        },
    }
    if rng.random() < 0.7:
        problem["intra_node_link"] = {"bandwidth": 1000.0, "latency": 0.01}
    return problem


def check_reported_figures(problem: dict[str, Any], out: dict[str, Any], objective: str) -> None:
    """Recomputes every time and total of the output from the contract."""
    devices = tuple(s["device"] for s in out["stages"])
    cuts = tuple(s["first_layer"] for s in out["stages"][1:])
    assert out["stages"][0]["first_layer"] == 0
    assert out["stages"][-1]["last_layer"] == len(problem["layers"]) - 1
    for a, b in zip(out["stages"], out["stages"][1:], strict=False):
        assert b["first_layer"] == a["last_layer"] + 1
    assert len(set(devices)) == len(devices)
    if problem.get("constraints", {}).get("fixed_order", False):
        order = [d["id"] for d in problem["devices"]]
        assert [order.index(d) for d in devices] == sorted(order.index(d) for d in devices)
    c = price(problem, devices, cuts)
    assert c.feasible
    for stage, t in zip(out["stages"], c.stage_times, strict=False):
        assert close(stage["time"], t)
    assert len(out["hops"]) == len(c.hop_times)
    for hop, t in zip(out["hops"], c.hop_times, strict=False):
        assert close(hop["time"], t)
    assert close(out["latency"], c.latency)
    assert close(out["bottleneck"], c.bottleneck)
    batch = problem["workload"]["batch"]
    if c.bottleneck > 0:
        assert close(out["tokens_per_second"], batch / c.bottleneck)
    assert close(out["value"], value(c, objective))


@pytest.mark.parametrize("seed", range(6))
def test_optimal_matches_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    checked = 0
    for _ in range(60):
        problem = random_problem(rng, rng.randint(1, 4), rng.randint(1, 6))
        candidates = all_placements(problem)
        for objective in OBJECTIVES:
            if not candidates:
                with pytest.raises(PlacementInfeasible) as info:
                    solve(problem, objective)
                assert isinstance(info.value, exogpu.InvalidArgument)
                assert "bytes" in str(info.value)
                continue
            out = solve(problem, objective).to_json()
            assert out["optimal"] is True
            assert out["lower_bound"] == out["value"]
            best = min(value(c, objective) for c in candidates)
            assert close(out["value"], best), (problem, objective)
            check_reported_figures(problem, out, objective)
            # tie-breaks among the optima
            optima = [c for c in candidates if close(value(c, objective), best)]
            n_stages = len(out["stages"])
            if objective == "memory":
                assert out["latency"] <= min(c.latency for c in optima) * (1 + 1e-9) + 1e-15
            else:
                assert n_stages == min(len(c.devices) for c in optima)
                same = [c for c in optima if len(c.devices) == n_stages]
                assert out["latency"] <= min(c.latency for c in same) * (1 + 1e-9) + 1e-15
            checked += 1
    assert checked > 100


@pytest.mark.parametrize("strategy", ["exo-memory-weighted", "free-memory-proportional"])
def test_baselines_are_priced_by_the_contract(strategy: str) -> None:
    rng = random.Random(99)
    flagged = 0
    for _ in range(80):
        problem = random_problem(rng, rng.randint(1, 4), rng.randint(1, 6))
        out = solve(problem, "throughput", strategy=strategy).to_json()
        assert out["optimal"] is False
        devices = tuple(s["device"] for s in out["stages"])
        cuts = tuple(s["first_layer"] for s in out["stages"][1:])
        c = price(problem, devices, cuts)
        assert out["feasible"] is c.feasible
        if not c.feasible:
            flagged += 1
            assert "more than" in out["infeasible_reason"]
        assert close(out["bottleneck"], c.bottleneck)
        assert close(out["latency"], c.latency)
        # the optimum is never worse than a baseline that fits
        candidates = all_placements(problem)
        if c.feasible:
            assert solve(problem, "throughput").value <= c.bottleneck * (1 + 1e-9)
            assert candidates
    assert flagged > 0


def test_replanning_moves_fewest_layers() -> None:
    rng = random.Random(5)
    for _ in range(60):
        problem = random_problem(rng, rng.randint(2, 4), rng.randint(2, 6))
        candidates = all_placements(problem)
        if not candidates:
            continue
        first = solve(problem, "throughput")
        # One device leaves; replan from the first placement.
        leaving = rng.choice(problem["devices"])["id"]
        smaller = {
            **problem,
            "devices": [d for d in problem["devices"] if d["id"] != leaving],
            "links": [x for x in problem["links"] if leaving not in (x["a"], x["b"])],
        }
        remaining = all_placements(smaller)
        if not remaining:
            continue
        again = solve(smaller, "throughput", previous=first, departed=[leaving]).to_json()
        before = first.layer_devices()
        best = min(c.bottleneck for c in remaining)
        assert close(again["value"], best)

        def moved(c: Any, before: list[str] = before) -> int:
            after = [
                dev
                for dev, (i, j) in zip(c.devices, c.bounds, strict=False)
                for _ in range(i, j + 1)
            ]
            return sum(1 for x, y in zip(before, after, strict=False) if x != y)

        fewest = min(moved(c) for c in remaining if close(c.bottleneck, best))
        assert len(again["moved_layers"]) == fewest
        after = [
            s["device"]
            for s in again["stages"]
            for _ in range(s["first_layer"], s["last_layer"] + 1)
        ]
        assert again["moved_layers"] == [
            i for i, (x, y) in enumerate(zip(before, after, strict=False)) if x != y
        ]
