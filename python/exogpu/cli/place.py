"""`exogpu place` (solve a problem file) and `exogpu plan` (place a model here)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from exogpu import InvalidArgument
from exogpu.bounded_input import load_json
from exogpu.models import DTYPES
from exogpu.placement import BASELINES, OBJECTIVES, STRATEGIES, Placement, Problem, solve
from exogpu.placement.emit import DEFAULT_RPC_PORT, ENGINES, EnginePlan, emit
from exogpu.placement.engines import ENGINES as ENGINE_PROFILES
from exogpu.placement.engines import apply_engine


def register(subparsers: Any) -> None:
    place = subparsers.add_parser(
        "place", help="solve a placement problem file (docs/placement.md)"
    )
    place.add_argument("--problem", required=True, help="problem JSON or TOML file")
    place.add_argument(
        "--previous",
        metavar="FILE",
        help="a previous placement (the --json output): prefer the plan that moves fewest layers",
    )
    place.add_argument(
        "--departed",
        action="append",
        default=[],
        metavar="ID",
        help="a device of --previous that left the cluster (repeatable)",
    )
    place.add_argument("--objective", choices=OBJECTIVES, default="throughput")
    place.add_argument("--strategy", choices=STRATEGIES, default="optimal")
    place.add_argument("--time-budget", type=float, default=1.0, metavar="SECONDS")
    place.add_argument("--json", action="store_true", help="print the contract's output JSON")
    _add_engine_argument(place)
    _add_emit_arguments(place)
    place.set_defaults(func=run_place)

    plan = subparsers.add_parser(
        "plan", help="place a model on this machine's devices (or a cluster file)"
    )
    plan.add_argument("--model", required=True, help="catalog name or path to a config.json")
    plan.add_argument("--cluster", help="cluster JSON or TOML file (default: the devices here)")
    plan.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default=None,
        help="default: latency for one stream, throughput for several (--streams)",
    )
    plan.add_argument(
        "--streams",
        type=int,
        default=1,
        metavar="N",
        help="concurrent requests to serve (default 1: one chat, optimised for latency)",
    )
    plan.add_argument("--dtype", choices=DTYPES, default="bf16")
    plan.add_argument("--context", type=int, default=0, metavar="TOKENS")
    plan.add_argument("--batch", type=int, default=1)
    plan.add_argument("--headroom", type=float, default=0.1, help="memory fraction kept free")
    plan.add_argument(
        "--allow-disk-offload",
        action="store_true",
        help="let a device hold more layers than fit its memory, the excess read from disk "
        "every token at its node's measured disk read bandwidth (exogpu profile)",
    )
    plan.add_argument("--time-budget", type=float, default=1.0, metavar="SECONDS")
    plan.add_argument("--json", action="store_true")
    plan.add_argument(
        "--no-measure",
        action="store_true",
        help="use the table of known devices instead of the cached or measured profile",
    )
    plan.add_argument(
        "--thermal",
        action="store_true",
        help="read this machine's sensors now and down-weight hot or throttled devices",
    )
    plan.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="survey the running Ray cluster at HOST:PORT (or 'auto') and place on it",
    )
    _add_engine_argument(plan)
    _add_emit_arguments(plan)
    plan.set_defaults(func=run_plan)


def _add_engine_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine",
        choices=ENGINE_PROFILES,
        default="direct",
        help="price the plan as this engine moves data: direct (the contract's hops, the "
        "default) or llama.cpp-rpc (its client keeps the embedding and relays every hop; "
        "needs the problem's or cluster file's endpoints)",
    )


def _add_emit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--emit",
        choices=ENGINES,
        metavar="ENGINE",
        help=f"also print what ENGINE needs to run the plan ({', '.join(ENGINES)})",
    )
    parser.add_argument(
        "--address",
        action="append",
        default=[],
        metavar="NODE=HOST[:PORT]",
        help="how --emit reaches a node (repeatable; overrides the cluster file's nodes)",
    )
    parser.add_argument(
        "--rpc-port",
        type=int,
        default=DEFAULT_RPC_PORT,
        metavar="PORT",
        help=f"llama.cpp rpc-server port of an address without one (default {DEFAULT_RPC_PORT})",
    )
    parser.add_argument(
        "--client",
        metavar="NODE",
        help="llama.cpp: the node that runs llama-server (default: a host outside the plan)",
    )
    parser.add_argument(
        "--model-file",
        metavar="PATH",
        help="the model the emitted commands load (GGUF file, or vLLM model name)",
    )


def _addresses(args: argparse.Namespace, known: dict[str, str]) -> dict[str, str]:
    out = dict(known)
    for item in args.address:
        node, sep, address = item.partition("=")
        if not sep or not node:
            raise InvalidArgument(f"--address {item!r}: expected NODE=HOST[:PORT]")
        out[node] = address
    return out


def _emit(
    args: argparse.Namespace,
    placement: Placement,
    problem: Problem,
    known_addresses: dict[str, str],
    model: str | None = None,
) -> EnginePlan | None:
    if not args.emit:
        if args.address or args.client:
            raise InvalidArgument("--address and --client go with --emit ENGINE")
        return None
    return emit(
        args.emit,
        placement,
        problem,
        _addresses(args, known_addresses),
        client=args.client,
        rpc_port=args.rpc_port,
        model=args.model_file or model,
    )


def _print_launch(console: Console, launch: EnginePlan) -> None:
    console.print(f"[bold]To run it with {launch.engine}:[/]")
    # out(): no markup, no wrapping, so the commands paste as printed
    console.out(launch.render(), highlight=False)


def _error(message: str) -> int:
    # escape: a hostile file's field names and ids must not read as markup
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return 2


def _read_previous(path: str) -> Any:
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise InvalidArgument(f"cannot read previous placement {path}: {e.strerror}") from None
    return load_json(raw, what=f"previous placement {path}", error=InvalidArgument)


def run_place(args: argparse.Namespace) -> int:
    try:
        problem = apply_engine(Problem.from_json(Path(args.problem)), args.engine)
        previous = _read_previous(args.previous) if args.previous else None
        result = solve(
            problem,
            args.objective,
            args.time_budget,
            args.strategy,
            previous=previous,
            departed=args.departed,
        )
        launch = _emit(args, result, problem, {}) if result.feasible else None
    except (InvalidArgument, ValueError) as e:
        return _error(str(e))
    if args.json:
        out = result.to_json()
        if launch is not None:
            out["emit"] = launch.to_json()
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        console = Console()
        _print_placement(console, problem, result, title=f"{args.strategy} ({args.objective})")
        if launch is not None:
            _print_launch(console, launch)
    return 0 if result.feasible else 1


def _local_cluster(args: argparse.Namespace) -> Any:
    """The devices here, with speeds from the cached profile (measured now,
    quickly, when none is fresh) unless --no-measure asks for the table."""
    from exogpu import cluster as clusters
    from exogpu import profile

    discovered = clusters.discover()
    if args.no_measure:
        return discovered
    return discovered.with_profile(profile.ensure_profile(quick=True).measured())


def _thermal_weights(problem: Problem) -> tuple[Problem, dict[str, dict[str, Any]]]:
    """`problem` derated by one reading of the sensors here, and what each
    device's thermal state was (devices the sensors cannot see are absent)."""
    from exogpu import monitoring
    from exogpu.thermal import ThermalPolicy

    policy = ThermalPolicy()
    states = policy.update(monitoring.read_all())
    seen = {
        d.id: {"state": states[d.id].state.value, "weight": policy.weight(d.id)}
        for d in problem.devices
        if d.id in states
    }
    return policy.derate(problem), seen


def run_plan(args: argparse.Namespace) -> int:
    from exogpu import cluster as clusters
    from exogpu import models

    if args.streams < 1:
        return _error(f"--streams must be at least 1, got {args.streams}")
    if args.objective is None:
        args.objective = "latency" if args.streams == 1 else "throughput"
    if getattr(args, "ray", None):
        if args.emit:
            return _error("--emit does not go with --ray yet: give the cluster with --cluster")
        from exogpu.ray.cli import run_plan_ray

        return run_plan_ray(args)
    if args.thermal and args.cluster:
        return _error("--thermal reads this machine's sensors; it cannot judge a cluster file")
    thermal: dict[str, dict[str, Any]] = {}
    try:
        model = models.get(args.model)
        cluster = clusters.Cluster.from_file(args.cluster) if args.cluster else _local_cluster(args)
        if args.allow_disk_offload and not any(
            d.disk_read_bandwidth is not None for d in cluster.devices
        ):
            raise InvalidArgument(
                "--allow-disk-offload needs the disk read bandwidth of a node: run `exogpu "
                "profile` there (or give devices[].disk_read_bandwidth in the cluster file)"
            )
        problem = Problem.from_model(
            model,
            cluster,
            batch=args.batch,
            context_tokens=args.context,
            dtype=args.dtype,
            memory_headroom=args.headroom,
            allow_disk_offload=args.allow_disk_offload,
            # llama.cpp hands float32 hidden states from device to device
            activation_dtype="f32" if args.engine == "llama.cpp-rpc" else "bf16",
        )
        problem = apply_engine(problem, args.engine)
        if args.thermal:
            problem, thermal = _thermal_weights(problem)
        best = solve(problem, args.objective, args.time_budget)
        baselines = {name: solve(problem, args.objective, strategy=name) for name in BASELINES}
        launch = _emit(args, best, problem, cluster.addresses, _model_name(model, args.emit))
    except (InvalidArgument, ValueError) as e:
        return _error(str(e))
    if args.json:
        out = {
            "version": 2,
            "model": model.name,
            "streams": args.streams,
            "objective": args.objective,
            "streams_tokens_per_second": _with_streams(best, args.streams),
            "dtype": args.dtype,
            "allow_disk_offload": args.allow_disk_offload,
            "cluster": cluster.to_json(),
            "placement": best.to_json(),
            "baselines": {k: v.to_json() for k, v in baselines.items()},
        }
        if args.thermal:
            out["thermal"] = thermal
        if launch is not None:
            out["emit"] = launch.to_json()
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    console = Console()
    console.print(
        f"[bold]{escape(model.name)}[/] in {args.dtype}: "
        f"{problem.total_resident_bytes() / 2**30:.2f} GiB "
        f"resident (batch {args.batch}, context {args.context}) on "
        f"{len(cluster.devices)} device(s)",
        highlight=False,
    )
    pools = problem.pool_capacities()
    for d in cluster.devices:
        shared = ""
        if d.memory_pool is not None:
            shared = f", shares {escape(d.memory_pool)} ({pools[d.memory_pool] / 2**30:.1f} GiB)"
        if args.allow_disk_offload and d.disk_read_bandwidth is not None:
            shared += f", disk {d.disk_read_bandwidth / 1e9:.2f} GB/s"
        console.print(
            f"  {escape(d.id)} {escape(d.name or '')} on {escape(d.node)}: "
            f"{d.memory_bytes / 2**30:.1f} GiB{shared}, "
            f"{d.flops / 1e12:.2f} TFLOP/s, {d.memory_bandwidth / 1e9:.0f} GB/s "
            f"(speed: {escape(d.speed_source)})",
            highlight=False,
        )
    for device_id, seen in thermal.items():
        if seen["weight"] < 1.0:
            console.print(
                f"  thermal: {escape(device_id)} is {seen['state']}: its speed counts "
                f"x{seen['weight']:.2f}",
                highlight=False,
            )
    _print_placement(console, problem, best, title=f"optimal ({args.objective})")
    summary = Table(title="Against the baselines (same cost model)")
    for col in (
        "strategy",
        "single stream tok/s",
        "pipeline tok/s",
        "in flight",
        "latency (ms)",
        "stages",
        "fits",
    ):
        summary.add_column(col)
    for name, r in [("optimal", best), *baselines.items()]:
        summary.add_row(
            name,
            _rate(r.single_stream_tokens_per_second),
            _rate(r.pipeline_tokens_per_second),
            str(r.requests_in_flight),
            f"{r.latency * 1e3:.3f}",
            str(len(r.stages)),
            "yes" if r.feasible else escape(f"no: {r.infeasible_reason}"),
        )
    console.print(summary)
    if args.streams > 1:
        console.print(
            f"with {args.streams} streams: about "
            f"{_rate(_with_streams(best, args.streams))} tokens/s in all",
            highlight=False,
        )
    if launch is not None:
        _print_launch(console, launch)
    return 0


def _model_name(model: Any, engine: str | None) -> str | None:
    """vLLM loads a Hugging Face model by name: the catalog's source repository."""
    source = str(model.config.get("source", "")).split(" ")[0]
    return source if engine == "vllm" and source.count("/") == 1 else None


def _with_streams(r: Placement, streams: int) -> float | None:
    """Aggregate tokens/s with `streams` requests in flight: each gets the
    single-stream rate until the pipeline is full (one per stage)."""
    single, full = r.single_stream_tokens_per_second, r.pipeline_tokens_per_second
    if single is None or full is None:
        return full
    return min(streams * single, full)


def _rate(x: float | None) -> str:
    return "inf" if x is None else f"{x:.2f}"


def _print_placement(console: Console, problem: Problem, r: Placement, title: str) -> None:
    table = Table(title=escape(title))
    offloads = any(s.offloaded_bytes for s in r.stages)
    columns = ["device", "layers", "time (ms)", "memory (GiB)"]
    columns += ["from disk (GiB)"] if offloads else []
    for col in (*columns, "names"):
        table.add_column(col)
    for s in r.stages:
        names = f"{problem.layers[s.first_layer].name} .. {problem.layers[s.last_layer].name}"
        disk = [f"{s.offloaded_bytes / 2**30:.2f}"] if offloads else []
        table.add_row(
            escape(s.device),
            f"{s.first_layer}-{s.last_layer} ({s.layer_count})",
            f"{s.time * 1e3:.3f}",
            f"{s.memory_bytes / 2**30:.2f}",
            *disk,
            escape(names),
        )
    console.print(table)
    ends = [h for h in r.hops if h.kind in ("entry", "exit")]
    if ends:
        console.print(
            "endpoint hops: "
            + "; ".join(
                f"{h.kind} {escape(h.source)} -> {escape(h.target)} {h.time * 1e3:.3f} ms"
                for h in ends
            ),
            highlight=False,
        )
    status = "proven optimal" if r.optimal else f"best found, gap {r.gap:.2%}"
    if not r.feasible:
        status = f"does not fit: {r.infeasible_reason}"
    console.print(
        f"single stream {_rate(r.single_stream_tokens_per_second)} tokens/s (batch / latency); "
        f"pipeline {_rate(r.pipeline_tokens_per_second)} tokens/s with "
        f"{r.requests_in_flight} requests in flight (batch / bottleneck)",
        highlight=False,
    )
    console.print(
        f"latency {r.latency * 1e3:.3f} ms  bottleneck "
        f"{r.bottleneck * 1e3:.3f} ms  value {r.value:.6g}  ({escape(status)}; "
        f"solved in {r.solve_seconds * 1e3:.2f} ms)",
        highlight=False,
    )
