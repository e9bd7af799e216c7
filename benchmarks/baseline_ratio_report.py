"""How much faster the optimum is than exo's and llama.cpp's layer splits,
for one stream and for a full pipeline, kept apart.

    python benchmarks/baseline_ratio_report.py

On the example clusters (benchmarks/clusters), each with a model it holds
(context 4096, batch 1, 10 % memory headroom), the predicted tokens/s of:

* the optimum: of the latency objective for one stream (batch / latency),
  of the throughput objective for the pipeline (batch / bottleneck, with one
  request in flight per stage);
* exo's rule, exo-memory-weighted: layer boundaries at floor(L * cumulative
  memory / total memory), devices in the cluster's order;
* llama.cpp's default split, as llama.cpp computes it
  (exogpu.placement.emit.llama_cpp.default_split_stages): the blocks and the
  output layer shared in proportion to each device's free memory, the first
  device whose cumulative share exceeds i / (n_layer + 1) taking unit i, the
  embedding with the client (here: with the first device). The built-in
  free-memory-proportional baseline counts the embedding as a unit too; the
  last column gives its rate where its stages differ.

Each ratio is the optimum's rate over the rule's, both priced by the same
cost model in the same run; a rule whose split overflows a device is shown
as "no fit". Predictions, not measurements: nothing here is timed.
"""

from __future__ import annotations

import argparse

from exogpu.placement import Placement, Problem, evaluate, solve
from exogpu.placement.emit.llama_cpp import default_split_stages
from placement_instances import on_cluster

CASES = (
    ("lab-3-nodes", "llama-3-70b", "bf16"),
    ("home-mixed", "llama-3-70b", "int4"),
    ("home-mixed", "mixtral-8x7b", "bf16"),
    ("two-servers", "llama-3.1-405b", "fp8"),
    ("mac-studios-4090", "qwen2.5-72b", "bf16"),
    ("hobbyist", "mixtral-8x7b", "bf16"),
    ("lab-3-nodes", "deepseek-v3", "int4"),
)


def rate(p: Placement, objective: str) -> float | None:
    """The rate the objective is about, None when the split does not fit."""
    if not p.feasible:
        return None
    r = (
        p.single_stream_tokens_per_second
        if objective == "latency"
        else p.pipeline_tokens_per_second
    )
    assert r is not None
    return r


def cell(best: float, other: float | None) -> str:
    return f"{'no fit':>15s}" if other is None else f"{other:7.2f} (x{best / other:5.2f})"


def stages_of(p: Placement) -> list[tuple[str, int, int]]:
    return [(s.device, s.first_layer, s.last_layer) for s in p.stages]


def report(problem: Problem, objective: str, budget: float) -> str:
    best = solve(problem, objective, budget)
    exo = solve(problem, objective, strategy="exo-memory-weighted")
    llama = evaluate(problem, default_split_stages(problem), objective)
    builtin = solve(problem, objective, strategy="free-memory-proportional")
    top = rate(best, objective)
    assert top is not None
    proven = "yes" if best.optimal else f"gap {best.gap:.1%}"
    same = "same" if stages_of(builtin) == stages_of(llama) else cell(top, rate(builtin, objective))
    return (
        f"{top:8.2f} {best.requests_in_flight:6d} {proven:>6s}  {cell(top, rate(exo, objective))}  "
        f"{cell(top, rate(llama, objective))}  {same:>15s}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--time-budget", type=float, default=1.0, metavar="SECONDS")
    args = parser.parse_args()
    header = (
        f"  {'cluster / model':36s} {'optimum':>8s} {'stages':>6s} {'proven':>6s}  "
        f"{'exo (ratio)':>15s}  {'llama.cpp (ratio)':>15s}  {'built-in f-m-p':>15s}"
    )
    for objective, title in (
        ("latency", "One stream, tokens/s (latency objective: batch / latency)"),
        (
            "throughput",
            "Full pipeline, tokens/s with one request in flight per stage "
            "(throughput objective: batch / bottleneck)",
        ),
    ):
        print(f"== {title}")
        print(header)
        for where, model, dtype in CASES:
            problem = on_cluster(where, model, dtype)
            label = f"{where} / {model} {dtype}"
            print(f"  {label:36s} {report(problem, objective, args.time_budget)}")


if __name__ == "__main__":
    main()
