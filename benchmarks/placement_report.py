"""Figures of the native layer-placement search.

    python benchmarks/placement_report.py [--no-milp]

1. Llama 3 70B (bf16, 4096-token context) on 8 heterogeneous devices over 3
   nodes: median solve time per objective (3 warm-up runs, then 21).
2. The same instance as a HiGHS MILP (exogpu.placement.milp), timed in the
   same run: the ratio of times and the two optima.
3. Solve time as layers (32..200, 8 devices) and devices (2..16, 82 layers) grow.
4. Predicted tokens/s of the optimum over exo-memory-weighted (and llama.cpp's
   free-memory-proportional) on five heterogeneous clusters.
"""

from __future__ import annotations

import argparse
import statistics
import time

from exogpu.placement import Problem, solve
from placement_instances import llama70b_lab, on_cluster, synthetic


def median_ms(problem: Problem, objective: str, repeats: int = 21) -> tuple[float, bool, float]:
    for _ in range(3):
        solve(problem, objective, time_budget=1.0)
    times, optimal, gap = [], True, 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = solve(problem, objective, time_budget=1.0)
        times.append(time.perf_counter() - t0)
        optimal, gap = optimal and r.optimal, max(gap, r.gap)
    return statistics.median(times) * 1e3, optimal, gap


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-milp", action="store_true")
    parser.add_argument("--milp-time-limit", type=float, default=300.0)
    args = parser.parse_args()

    lab = llama70b_lab()
    print("== Llama 3 70B bf16, 8 heterogeneous devices over 3 nodes (lab-3-nodes.json)")
    native = {}
    for objective in ("throughput", "latency", "memory"):
        ms, optimal, _ = median_ms(lab, objective)
        native[objective] = ms
        print(f"  {objective:10s} median {ms:8.3f} ms  proven optimal: {optimal}")

    if not args.no_milp:
        from exogpu.placement.milp import solve_milp

        print("== The same instance as a HiGHS MILP (same run)")
        for objective in ("throughput", "latency"):
            t0 = time.perf_counter()
            value = solve_milp(lab, objective, time_limit=args.milp_time_limit)
            seconds = time.perf_counter() - t0
            ours = solve(lab, objective).value
            print(
                f"  {objective:10s} HiGHS {seconds * 1e3:10.1f} ms (value {value:.9g}); native "
                f"{native[objective]:.3f} ms (value {ours:.9g}); HiGHS/native = "
                f"{seconds * 1e3 / native[objective]:.0f}x"
            )

    print("== Solve time (throughput) as layers grow, 8 devices")
    for layers in (32, 64, 128, 200):
        ms, optimal, gap = median_ms(synthetic(layers - 2, 8), "throughput", repeats=7)
        print(f"  {layers:4d} layers  {ms:9.3f} ms  optimal {optimal}  gap {gap:.2e}")
    print("== Solve time (throughput) as devices grow, 82 layers (time budget 1 s)")
    for devices in (2, 4, 6, 8, 10, 12, 14, 16):
        ms, optimal, gap = median_ms(synthetic(80, devices), "throughput", repeats=5)
        print(f"  {devices:4d} devices {ms:9.3f} ms  optimal {optimal}  gap {gap:.2e}")

    print("== Predicted tokens/s: optimum vs baselines (throughput objective, context 4096)")
    cases = [
        ("lab-3-nodes", "llama-3-70b", "bf16"),
        ("home-mixed", "llama-3-70b", "int4"),
        ("two-servers", "llama-3.1-405b", "fp8"),
        ("mac-studios-4090", "qwen2.5-72b", "bf16"),
        ("hobbyist", "mixtral-8x7b", "bf16"),
    ]
    for cluster_name, model, dtype in cases:
        problem = on_cluster(cluster_name, model, dtype)
        best = solve(problem, "throughput")
        row = f"  {cluster_name:17s} {model} {dtype}: optimum {best.tokens_per_second:8.2f} tok/s"
        for strategy in ("exo-memory-weighted", "free-memory-proportional"):
            r = solve(problem, "throughput", strategy=strategy)
            tps = r.tokens_per_second or 0.0
            fits = "" if r.feasible else " (does not fit)"
            assert best.tokens_per_second is not None
            row += f" | {strategy} {tps:8.2f}{fits} x{best.tokens_per_second / tps:.2f}"
        print(row)


if __name__ == "__main__":
    main()
