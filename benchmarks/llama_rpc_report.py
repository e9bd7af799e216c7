"""exogpu's plan and its predictions against real llama.cpp over RPC: ms per
generated token, predicted and measured, on a heterogeneous cluster built on
this machine (benchmarks/llamarpc/lab.py): three ggml-rpc-server processes,
each pinned to a core and slowed by a CPU quota, each behind its own shaped
link with its own latency, each with a memory limit that keeps the model off
the fastest one alone.

For each model shape (TinyLlama-1.1B dense and a small mixture of experts,
random Q8_0 weights written here):

1. exogpu measures the cluster: `exogpu profile` of each server's core under
   its quota (the uncalibrated device speeds) and `exogpu probe net` of each
   link from the client's namespace (bandwidth, RTT);
2. one llama-bench run per server with the whole model on it calibrates each
   device (its speed through ggml-rpc-server, as llama.cpp sees it);
3. exogpu plans with the llama.cpp RPC engine profile and emits llama.cpp's
   flags;
4. llama-bench (`-p 0 -n 32`) runs the plan's split, llama.cpp's default
   split (no -ts) and other splits, interleaved with the calibration runs,
   for several rounds;
5. a table of predicted (calibrated and uncalibrated) against measured
   ms/token, the ranking of every pair of splits, and a plot per shape.

Needs root (namespaces, cgroups, tc), builds llama.cpp on first use (minutes,
cached under the exogpu cache directory). Not part of CI.

    python benchmarks/llama_rpc_report.py [--rounds 4] [--shapes tinyllama-1.1b,moe-8x2]
                                          [--out llama-rpc-report]
    python benchmarks/llama_rpc_report.py --analyze llama-rpc-report/measured.json

The second form prices saved measurements again with the installed exogpu.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from exogpu.placement import solve
from exogpu.placement.emit import emit_llama_cpp
from exogpu.placement.emit.llama_cpp import default_split_stages
from exogpu.profile import cache_dir
from llamarpc import bench, gguf_model, lab, predict, report
from llamarpc.build import LLAMA_CPP_PYTHON, ensure_built

MiB = 1 << 20
# Three servers on two cores. Only one server computes at a time (llama.cpp
# runs the stages of a token one after another), so two sharing a core do
# not slow each other.
CLUSTER = [
    lab.ServerSpec("fast", core=0, cpu_share=1.0, rate_mbit=1000, delay_ms=0.0,
                   memory_bytes=640 * MiB),
    lab.ServerSpec("slow", core=1, cpu_share=0.5, rate_mbit=200, delay_ms=1.0,
                   memory_bytes=1536 * MiB),
    lab.ServerSpec("far", core=1, cpu_share=0.8, rate_mbit=50, delay_ms=8.0,
                   memory_bytes=1536 * MiB),
]


def profile_server(tb: lab.Lab, i: int) -> dict[str, float]:
    """`exogpu profile` of server i's core, under its CPU quota."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            tb.in_server_cpu(i, [sys.executable, "-m", "exogpu", "profile", "--json"]),
            capture_output=True, text=True, check=True, timeout=300,
            env={**os.environ, "EXOGPU_CACHE_DIR": tmp})
    cpu = next(d for d in json.loads(out.stdout)["devices"] if d["id"].startswith("cpu"))
    return {"flops": cpu["flops"], "memory_bandwidth": cpu["memory_bandwidth"]}


def probe_link(tb: lab.Lab, i: int) -> dict[str, float]:
    """`exogpu probe net` from the client's namespace to server i, shaped."""
    tb.shape(True)
    try:
        out = subprocess.run(
            tb.client([sys.executable, "-m", "exogpu", "probe", "net", tb.probe_endpoint(i),
                       "--seconds", "2", "--udp-rate", "0", "--json"]),
            capture_output=True, text=True, check=True, timeout=120,
            env={**os.environ, "EXOGPU_PROBE_TOKEN": tb.token})
    finally:
        tb.shape(False)
    doc = json.loads(out.stdout)
    return {"bandwidth": doc["bandwidth_bps"] / 8.0, "latency": doc["rtt_us"]["median"] / 2e6,
            "rtt_us": doc["rtt_us"]["median"]}


def splits_for(problem: Any, plan: Any, tb: lab.Lab, model: Path) -> list[bench.Split]:
    """exogpu's plan as the llama-bench flags it emits, llama.cpp's default
    split, and hand-made splits that fit the servers' memory."""
    emitted = emit_llama_cpp(plan, problem,
                             {s.name: tb.rpc_endpoint(i) for i, s in enumerate(CLUSTER)},
                             model_path=str(model))
    index = {predict.device_id(s): i for i, s in enumerate(CLUSTER)}
    n = len(problem.layers)
    fast_last = predict.most_units(problem, 0, with_output=True)
    fast_first = predict.most_units(problem, 0, with_output=False)
    plan_split = bench.Split("exogpu plan", tuple(index[d] for d in emitted.device_ids),
                             tuple(float(x) for x in emitted.tensor_split),
                             flags=emitted.bench_flags)
    others = [
        bench.Split("memory-proportional", (0, 1, 2),
                    tuple(float(s.memory_bytes // MiB) for s in CLUSTER)),
        bench.Split("slow+fast", (1, 0), (float(n - fast_last), float(fast_last))),
        bench.Split("far+fast", (2, 0), (float(n - fast_last), float(fast_last))),
        bench.Split("fast+far", (0, 2), (float(fast_first), float(n - fast_first))),
        bench.Split("slow-heavy", (0, 1, 2), (4.0, float(n - 8), 4.0)),
    ]

    def units(s: bench.Split) -> tuple[tuple[int, int], ...]:
        counts = bench.units_of(s, n, len(CLUSTER))
        return tuple((i, counts[i]) for i in s.order if counts[i])

    distinct = [s for s in others if units(s) != units(plan_split)][:4]
    return [plan_split, bench.Split("default", (0, 1, 2), None), *distinct]


def measure_shape(tb: lab.Lab, shape: gguf_model.Shape, model: Path,
                  devices: list[dict[str, float]], links: list[dict[str, float]],
                  args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    problem = predict.base_problem(shape, CLUSTER, devices, links)
    n = len(problem.layers)
    file_units = gguf_model.unit_bytes(model)
    if len(file_units) != n:
        raise RuntimeError(f"{model}: {len(file_units)} units, the model has {n}")
    calib = [bench.Split(f"calibrate {s.name}", (i,), (1.0,), calibrates=i)
             for i, s in enumerate(CLUSTER)]

    def once(split: bench.Split, tag: str) -> bench.Run:
        print(f"  {tag}: {split.label}: {' '.join(bench.placement_flags(tb, split))}",
              flush=True)
        return bench.run(tb, model, split, args.n_gen, args.reps,
                         logs / f"{shape.name}-{tag}-{split.label.replace(' ', '_')}.log")

    # A first calibration, from which exogpu plans.
    first = {i: statistics.median(once(c, "first").samples_ms_per_token)
             for i, c in enumerate(calib)}
    plan = solve(predict.calibrated(problem, CLUSTER, first), objective="latency")
    splits = splits_for(problem, plan, tb, model)
    for s in splits:
        stages = predict.stages_of(CLUSTER, bench.units_of(s, n, len(CLUSTER)), s.order)
        if not predict.predict(problem, stages).feasible:
            raise RuntimeError(f"split {s.label} does not fit the servers' memory")
    # exogpu's model of llama.cpp's default split must be llama.cpp's rule
    default = predict.stages_of(CLUSTER, bench.units_of(splits[1], n, len(CLUSTER)),
                                splits[1].order)
    if default_split_stages(problem) != default:
        raise RuntimeError(f"exogpu's default split {default_split_stages(problem)} is not "
                           f"llama.cpp's {default}")

    every = [*calib, *splits]
    runs: dict[str, list[bench.Run]] = {s.label: [] for s in every}
    for r in range(args.rounds):
        for s in every[r % len(every):] + every[: r % len(every)]:  # a new order each round
            run = once(s, f"round{r + 1}")
            expected = bench.units_of(s, n, len(CLUSTER))
            if run.units != expected:
                raise RuntimeError(f"{s.label}: llama.cpp placed {run.units}, not {expected}")
            runs[s.label].append(run)
    return {
        "shape": asdict(shape),
        "model_file": str(model),
        "file_bytes_per_unit": file_units,
        "model_bytes_per_unit": [problem.resident_bytes(i) for i in range(n)],
        "first_calibration_ms": first,
        "plan": plan.to_json(),
        "splits": [{
            "label": s.label, "order": list(s.order), "tensor_split": s.tensor_split,
            "flags": bench.placement_flags(tb, s), "calibrates": s.calibrates,
            "units": bench.units_of(s, n, len(CLUSTER)),
            "samples_ms": [x for run in runs[s.label] for x in run.samples_ms_per_token],
            "link_bytes_per_token": runs[s.label][-1].link_bytes,
            "peak_memory": [max(m) for m in zip(*(run.peak_memory for run in runs[s.label]),
                                                strict=True)],
        } for s in every],
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    shapes = [gguf_model.SHAPES[s] for s in args.shapes.split(",")]
    tools = ensure_built()
    files = {s.name: gguf_model.ensure_model(s, cache_dir() / "llama-rpc-models") for s in shapes}
    started = time.time()
    raw: dict[str, Any] = {"llama_cpp_python": LLAMA_CPP_PYTHON, "reps": args.reps,
                           "n_gen": args.n_gen, "rounds": args.rounds,
                           "cluster": [asdict(s) for s in CLUSTER],
                           "load_before": os.getloadavg(), "shapes": {}}
    with lab.Lab(tools, CLUSTER, args.out / "logs") as tb:
        print("exogpu profile of each server's core, under its quota", flush=True)
        raw["devices_profiled"] = [profile_server(tb, i) for i in range(len(CLUSTER))]
        print("exogpu probe net of each link, from the client's namespace", flush=True)
        raw["links_probed"] = [probe_link(tb, i) for i in range(len(CLUSTER))]
        for s, d, x in zip(CLUSTER, raw["devices_profiled"], raw["links_probed"], strict=True):
            print(f"  {s.name}: {d['flops'] / 1e9:.1f} GFLOP/s, "
                  f"{d['memory_bandwidth'] / 1e9:.1f} GB/s; link "
                  f"{x['bandwidth'] * 8 / 1e6:.1f} Mbit/s (tbf {s.rate_mbit:g}), RTT "
                  f"{x['rtt_us'] / 1e3:.2f} ms (relay {2 * s.delay_ms:g} ms)", flush=True)
        for shape in shapes:
            print(f"{shape.name}:", flush=True)
            raw["shapes"][shape.name] = measure_shape(
                tb, shape, files[shape.name], raw["devices_profiled"], raw["links_probed"],
                args, args.out / "logs")
    raw["load_after"] = os.getloadavg()
    raw["seconds"] = time.time() - started
    return raw


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (default 4)")
    parser.add_argument("--reps", type=int, default=3,
                        help="timed repetitions per llama-bench run (default 3)")
    parser.add_argument("--n-gen", type=int, default=32, help="tokens per repetition")
    parser.add_argument("--shapes", default=",".join(gguf_model.SHAPES),
                        help=f"comma-separated, of {', '.join(gguf_model.SHAPES)}")
    parser.add_argument("--out", type=Path, default=Path("llama-rpc-report"),
                        help="folder for the measurements, the plots and the logs")
    parser.add_argument("--analyze", type=Path, metavar="MEASURED_JSON",
                        help="price saved measurements again instead of measuring")
    args = parser.parse_args()
    # SIGTERM (a timeout, a CI runner) unwinds like Ctrl-C, so that the lab's
    # processes, namespaces and cgroups are removed on the way out
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.analyze:
        raw = json.loads(args.analyze.read_text())
        args.out = args.analyze.parent
    else:
        reason = lab.unavailable_reason()
        if reason is not None:
            print(f"llama_rpc_report: cannot run here: {reason}", file=sys.stderr)
            return 2
        args.out.mkdir(parents=True, exist_ok=True)
        raw = measure(args)
        (args.out / "measured.json").write_text(json.dumps(raw, indent=1))
    for shape_raw in raw["shapes"].values():
        result = report.analyse(raw, shape_raw)
        report.print_table(result)
        png = args.out / f"{result['name']}.png"
        report.plot(result, png)
        print(f"plot: {png}")
    before, after = raw["load_before"][0], raw["load_after"][0]
    print(f"\nload average (1 min) before {before:.2f}, after {after:.2f}; measured in "
          f"{raw['seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
