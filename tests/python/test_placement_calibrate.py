"""Device speeds calibrated by one whole-model run per device."""

from __future__ import annotations

import random
from typing import Any

import pytest

import exogpu
from exogpu import models
from exogpu.placement import Problem, evaluate
from exogpu.placement.calibrate import calibrate


def problem_doc(rng: random.Random) -> dict[str, Any]:
    config = {"hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 6,
              "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 8000}
    keys = ("name", "weight_bytes", "kv_bytes_per_token", "flops_per_token",
            "activation_bytes", "read_bytes_per_token")
    layers = models.Model.from_config(config).layers("q8_0")
    return {
        "version": 2,
        "layers": [{k: getattr(x, k) for k in keys} for x in layers],
        "devices": [{"id": f"n{i}:cpu:0", "node": f"n{i}", "memory_bytes": 1 << 40,
                     "flops": rng.uniform(1e10, 1e11), "memory_bandwidth": rng.uniform(1e9, 2e10),
                     "stage_overhead": rng.uniform(0, 0.01)} for i in range(3)],
        "default_link": {"bandwidth": 1e7, "latency": 2e-3},
    }


def test_each_device_then_prices_its_own_run_as_measured() -> None:
    problem = Problem.from_json(problem_doc(random.Random(7)))
    last = len(problem.layers) - 1
    measured = {"n0:cpu:0": 0.25, "n2:cpu:0": 0.9}
    cal = calibrate(problem, measured)
    for device, seconds in measured.items():
        assert evaluate(cal, [(device, 0, last)], "latency").latency == pytest.approx(seconds)
    assert cal.devices[1] == problem.devices[1]  # not named: as it was
    assert cal.layers == problem.layers and cal.default_link == problem.default_link


def test_a_split_gets_each_devices_measured_rate() -> None:
    doc = problem_doc(random.Random(8))
    problem = Problem.from_json(doc)
    last = len(problem.layers) - 1
    a, b = "n0:cpu:0", "n1:cpu:0"
    measured = {a: 0.4, b: 0.7}
    cal = calibrate(problem, measured)
    # by hand: a device's whole-model compute is its measured time less its
    # stage overhead; a stage computes its layers' share of that, as the
    # profile's speeds share it out
    overhead = {d["id"]: d["stage_overhead"] for d in doc["devices"]}
    compute = {x: evaluate(problem, [(x, 0, last)], "latency").latency - overhead[x]
               for x in (a, b)}
    split = [(b, 0, 2), (a, 3, last)]
    priced = evaluate(problem, split, "latency")
    hop = 2e-3 + doc["layers"][2]["activation_bytes"] / 1e7
    expected = hop + sum(
        overhead[s.device] + (s.time - overhead[s.device]) / compute[s.device]
        * (measured[s.device] - overhead[s.device]) for s in priced.stages)
    assert evaluate(cal, split, "latency").latency == pytest.approx(expected)


def test_refusals() -> None:
    problem = Problem.from_json(problem_doc(random.Random(9)))
    with pytest.raises(exogpu.InvalidArgument, match="unknown device 'gpu:7'"):
        calibrate(problem, {"gpu:7": 0.1})
    for bad in (0.0, -1.0, float("nan"), float("inf"), True):
        with pytest.raises(exogpu.InvalidArgument, match="positive and finite"):
            calibrate(problem, {"n0:cpu:0": bad})
    with pytest.raises(exogpu.InvalidArgument, match="hops and overheads alone take"):
        calibrate(problem, {"n0:cpu:0": 1e-9})
