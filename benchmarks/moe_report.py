"""Predicted tokens/s of mixture-of-experts models before and after the cost
model reads only the experts a token uses.

    python benchmarks/moe_report.py

For Mixtral 8x7B and DeepSeek-V3 on the home-mixed cluster (and, where a
model does not fit there, on a cluster that holds it), three cost models of
the same problem (context 4096, batch 1, 10 % memory headroom):

* before: every layer streams all its weights each token (version 1);
* embedding rows: the embedding reads one row per sequence, every expert
  still read;
* after: the model catalog's read_bytes_per_token, the embedding's rows and,
  in a mixture-of-experts block, its shared weights plus the k of E experts
  a token picks.

For each: the single-stream rate (optimum of the latency objective, batch /
latency) and the full pipeline's rate (optimum of the throughput objective,
batch / bottleneck, with one request in flight per stage). Predictions of the
cost model, not measurements: nothing here is timed.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from exogpu import cluster, models
from exogpu.placement import Placement, PlacementInfeasible, Problem, solve
from placement_instances import CLUSTERS

CONTEXT = 4096
CASES = (
    ("mixtral-8x7b", "bf16", "home-mixed"),
    ("mixtral-8x7b", "int4", "home-mixed"),
    ("deepseek-v3", "int4", "home-mixed"),
    ("deepseek-v3", "int4", "lab-3-nodes"),
    ("deepseek-v3", "int4", "two-servers"),
)


def variants(model: models.Model, problem: Problem, dtype: str) -> dict[str, Problem]:
    """The problem under the three cost models (see the module docstring)."""
    catalog = model.layers(dtype=dtype, context_tokens=CONTEXT)
    everything = tuple(replace(x, read_bytes_per_token=None) for x in problem.layers)
    rows_only = tuple(
        replace(x, read_bytes_per_token=None) if m.experts is not None else x
        for x, m in zip(problem.layers, catalog, strict=True)
    )
    return {
        "before: every weight read": replace(problem, layers=everything),
        "embedding rows, every expert": replace(problem, layers=rows_only),
        "after: k of E experts": problem,
    }


def rates(problem: Problem, budget: float) -> tuple[Placement, Placement]:
    return solve(problem, "latency", budget), solve(problem, "throughput", budget)


def gib_read(problem: Problem) -> float:
    return sum(problem.read_bytes(i) for i in range(len(problem.layers))) / 2**30


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--time-budget", type=float, default=1.0, metavar="SECONDS")
    args = parser.parse_args()
    for name, dtype, where in CASES:
        model = models.get(name)
        problem = Problem.from_model(
            model,
            cluster.Cluster.from_file(CLUSTERS / f"{where}.json"),
            dtype=dtype,
            context_tokens=CONTEXT,
            memory_headroom=0.1,
        )
        print(f"== {name} ({dtype}) on {where}, context {CONTEXT}, batch 1")
        problems = variants(model, problem, dtype)
        try:
            results = {label: rates(p, args.time_budget) for label, p in problems.items()}
        except PlacementInfeasible as e:
            print(f"  does not fit: {e}")
            continue
        print(
            f"  {'cost model':30s} {'GiB read/token':>14s} {'one stream tok/s':>17s} "
            f"{'pipeline tok/s':>15s} {'in flight':>9s}  proven"
        )
        for label, (single, pipeline) in results.items():
            proven = "yes" if single.optimal and pipeline.optimal else "no"
            print(
                f"  {label:30s} {gib_read(problems[label]):14.2f} "
                f"{single.single_stream_tokens_per_second:17.2f} "
                f"{pipeline.pipeline_tokens_per_second:15.2f} "
                f"{pipeline.requests_in_flight:9d}  {proven}"
            )
        (b1, b2), (a1, a2) = results["before: every weight read"], results["after: k of E experts"]
        assert b1.single_stream_tokens_per_second and a1.single_stream_tokens_per_second
        assert b2.pipeline_tokens_per_second and a2.pipeline_tokens_per_second
        print(
            f"  {'after / before':30s} {'':14s} "
            f"{a1.single_stream_tokens_per_second / b1.single_stream_tokens_per_second:16.2f}x "
            f"{a2.pipeline_tokens_per_second / b2.pipeline_tokens_per_second:14.2f}x"
        )


if __name__ == "__main__":
    main()
