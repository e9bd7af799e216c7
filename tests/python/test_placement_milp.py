"""HiGHS, solving the same problems as a MILP, agrees with the native search."""

from __future__ import annotations

import math
import random

import pytest

from exogpu.placement import PlacementInfeasible, Problem, solve
from test_placement_oracle import random_problem

milp = pytest.importorskip("exogpu.placement.milp")
pytest.importorskip("highspy")


@pytest.mark.parametrize("objective", ["throughput", "latency"])
def test_milp_agrees(objective: str) -> None:
    rng = random.Random(17)
    compared = 0
    while compared < 12:
        data = random_problem(rng, rng.randint(2, 4), rng.randint(3, 7))
        data["constraints"] = {**data["constraints"], "ring": False, "fixed_order": False}
        problem = Problem.from_json(data)
        reference = milp.solve_milp(problem, objective)
        try:
            got = solve(problem, objective).value
        except PlacementInfeasible:
            assert reference == math.inf
            continue
        assert math.isclose(got, reference, rel_tol=1e-6, abs_tol=1e-9)
        compared += 1


@pytest.mark.parametrize("objective", ["throughput", "latency"])
def test_milp_agrees_with_pools_offload_overheads_and_endpoints(objective: str) -> None:
    from test_placement_v2_terms import pooled_problem

    rng = random.Random(41)
    compared = 0
    while compared < 12:
        data = pooled_problem(rng)
        problem = Problem.from_json(data)
        reference = milp.solve_milp(problem, objective)
        try:
            got = solve(problem, objective).value
        except PlacementInfeasible:
            assert reference == math.inf
            continue
        assert math.isclose(got, reference, rel_tol=1e-6, abs_tol=1e-9), (data, got, reference)
        compared += 1
