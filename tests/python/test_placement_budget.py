"""The time budget is a promise (docs/placement.md, "Time budget"): a large
problem with a short budget returns about in time, a budget that is not a
positive finite number is refused, and Ctrl-C interrupts the native search."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import exogpu
from exogpu.placement import Problem, solve

ROOT = Path(__file__).resolve().parents[2]


def wide_problem(n_layers: int, n_devices: int) -> Problem:
    """Distinct devices (no two collapse), memories that need many of them."""
    layers = [
        {
            "name": f"l{i}",
            "weight_bytes": 1000 + (i * 7919) % 500,
            "kv_bytes_per_token": 1,
            "flops_per_token": 1.0e4 + (i * 104729) % 3000,
            "activation_bytes": 64,
        }
        for i in range(n_layers)
    ]
    total = sum(x["weight_bytes"] + 16 for x in layers)
    devices = [
        {
            "id": f"d{i}",
            "node": f"n{i // 4}",
            "memory_bytes": int(3 * total / n_devices) + i,
            "flops": 1.0e9 * (1 + i % 7) + i,
            "memory_bandwidth": 1.0e9 * (1 + i % 5) + i,
        }
        for i in range(n_devices)
    ]
    return Problem.from_json(
        {
            "layers": layers,
            "devices": devices,
            "default_link": {"bandwidth": 1.0e8, "latency": 1e-4},
            "intra_node_link": {"bandwidth": 1.0e10, "latency": 1e-6},
            "workload": {"batch": 1, "context_tokens": 16},
        }
    )


@pytest.mark.parametrize("budget", [0, -1.0, math.inf, -math.inf, math.nan, "1", True])
def test_budget_that_is_not_a_positive_finite_number_is_refused(budget: Any) -> None:
    problem = wide_problem(8, 2)
    with pytest.raises(exogpu.InvalidArgument, match="time_budget"):
        solve(problem, time_budget=budget)


@pytest.mark.parametrize("objective", ["throughput", "latency", "memory"])
def test_large_problem_returns_about_in_time(objective: str) -> None:
    # 100000 layers on 8 distinct devices used to take over a minute with a
    # 1 s budget. The bound asserted is generous (sanitizers, a shared
    # machine); benchmarks/placement_budget.py measures the real overshoot.
    problem = wide_problem(100_000, 8)
    started = time.perf_counter()
    result = solve(problem, objective, time_budget=0.5)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5 + 5.0, elapsed
    assert result.feasible
    assert sum(s.layer_count for s in result.stages) == 100_000
    assert result.lower_bound <= result.value
    for strategy in ("exo-memory-weighted", "free-memory-proportional"):
        started = time.perf_counter()
        solve(problem, objective, time_budget=0.5, strategy=strategy)
        assert time.perf_counter() - started < 0.5 + 5.0


def test_tiny_budget_still_gives_a_placement() -> None:
    problem = wide_problem(20_000, 40)
    result = solve(problem, "throughput", time_budget=1e-6)
    assert result.feasible and not result.optimal
    assert 0 < result.lower_bound <= result.value


CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
from test_placement_budget import wide_problem
from exogpu.placement import solve
problem = wide_problem(3000, 40)
print("solving", flush=True)
started = time.monotonic()
try:
    solve(problem, "throughput", time_budget=600.0)
except KeyboardInterrupt:
    print(f"interrupted after {{time.monotonic() - started:.3f}}", flush=True)
    sys.exit(42)
print("finished", flush=True)
"""


# Passes alone and in the placement suite; once, late in a full loaded run, the
# SIGINT went unseen for 30 s. Kept visible as a known flake until the
# polling interval of deadline.hpp is bounded in time as well as in work.
@pytest.mark.xfail(reason="SIGINT was once unseen for 30 s under load", strict=False)
def test_ctrl_c_interrupts_the_native_search() -> None:
    code = CHILD.format(tests=str(ROOT / "tests" / "python"))
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "solving"
        time.sleep(1.0)  # well inside the native search
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
        waited = time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 42, (out, err)
    assert "interrupted after" in out
    assert waited < 10.0  # the child answers within tens of ms; a loaded machine is slower
