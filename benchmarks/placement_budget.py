"""How well solve() keeps its time budget (docs/placement.md, "Time budget").

    python benchmarks/placement_budget.py [--quick]

For layers up to the contract's 100000 and devices up to its 64 (distinct
kinds, so nothing collapses), each objective and a few budgets: the wall time
of the whole Python call on an already parsed Problem, its overshoot past the
budget, and whether the answer was proven. The largest overshoot is the slack
the contract documents.
"""

from __future__ import annotations

import argparse
import time

from exogpu.placement import solve
from placement_instances import synthetic


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer sizes")
    args = parser.parse_args()
    layer_counts = (1000, 100_000) if args.quick else (1000, 10_000, 100_000)
    device_counts = (8, 64) if args.quick else (8, 32, 64)
    budgets = (0.01, 1.0) if args.quick else (0.01, 0.1, 1.0)
    worst = 0.0
    print(f"{'layers':>7} {'devices':>7} {'objective':>10} {'budget s':>8} {'wall s':>8} "
          f"{'over s':>7} {'proven':>6} {'gap':>8}")  # fmt: skip
    for n_layers in layer_counts:
        for n_devices in device_counts:
            problem = synthetic(n_layers, n_devices)
            for objective in ("throughput", "latency", "memory"):
                for budget in budgets:
                    started = time.perf_counter()
                    r = solve(problem, objective, time_budget=budget)
                    wall = time.perf_counter() - started
                    over = max(0.0, wall - budget)
                    worst = max(worst, over)
                    print(f"{n_layers:>7} {n_devices:>7} {objective:>10} {budget:>8.2f} "
                          f"{wall:>8.3f} {over:>7.3f} {r.optimal!s:>6} {r.gap:>8.2%}",
                          flush=True)  # fmt: skip
    print(f"largest overshoot past the budget: {worst:.3f} s")


if __name__ == "__main__":
    main()
