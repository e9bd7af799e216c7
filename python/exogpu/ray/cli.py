"""`exogpu plan --ray ADDRESS|auto`: survey a running Ray cluster, place the
model on it, and print each stage with its node (name, id, address) and its
bundle index in the plan's placement group."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from exogpu import InvalidArgument
from exogpu.placement import Problem


def _error(message: str) -> int:
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)
    return 2


def run_plan_ray(args: argparse.Namespace) -> int:
    from exogpu import models
    from exogpu import ray as xray
    from exogpu.ray._api import require_ray

    if getattr(args, "cluster", None):
        return _error("--ray surveys the Ray cluster; it cannot be combined with --cluster")
    if getattr(args, "thermal", False):
        return _error("--thermal reads this machine's sensors; it cannot judge a Ray cluster")
    try:
        model = models.get(args.model)
        xray.connect(args.ray)
        try:
            surveyed = xray.survey(measure=not args.no_measure)
            problem = Problem.from_model(
                model,
                surveyed.cluster,
                batch=args.batch,
                context_tokens=args.context,
                dtype=args.dtype,
                memory_headroom=args.headroom,
                allow_disk_offload=getattr(args, "allow_disk_offload", False),
            )
            rp = xray.plan(surveyed, problem, args.objective, args.time_budget)
        finally:
            require_ray().shutdown()
    except (InvalidArgument, ValueError, KeyError) as e:
        return _error(str(e))
    if args.json:
        out: dict[str, Any] = {
            "model": model.name,
            "dtype": args.dtype,
            "nodes": [
                {"name": n.name, "node_id": n.node_id, "ip": n.ip, "hostname": n.hostname}
                for n in surveyed.nodes
            ],
            "topology": surveyed.topology.to_dict(),
            "cluster": surveyed.cluster.to_json(),
            **rp.to_json(),
            "timings": dict(surveyed.timings),
        }
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0 if rp.placement.feasible else 1
    _print(Console(), surveyed, rp, model.name, args)
    return 0 if rp.placement.feasible else 1


def _print(console: Console, surveyed: Any, rp: Any, model: str, args: argparse.Namespace) -> None:
    nodes = Table(title=f"Ray cluster: {len(surveyed.nodes)} alive node(s)")
    for col in ("node", "node id", "address", "devices"):
        nodes.add_column(col)
    for inv in surveyed.inventories:
        devices = ", ".join(
            f"{d.id.split('/', 1)[1]} ({d.memory_bytes / 2**30:.1f} GiB, "
            f"{d.flops / 1e12:.2f} TFLOP/s, {d.speed_source})"
            for d in inv.devices
        )
        nodes.add_row(inv.node.name, inv.node.node_id, inv.node.ip, devices)
    console.print(nodes)
    links = Table(title="Links (measured one at a time)")
    for col in ("a", "b", "Mbit/s", "one-way latency (ms)"):
        links.add_column(col)
    for link in surveyed.topology.links:
        links.add_row(
            link.a, link.b, f"{link.bandwidth * 8 / 1e6:.1f}", f"{link.latency * 1e3:.3f}"
        )
    for a, b in surveyed.topology.unmeasured:
        links.add_row(a, b, "not measured in time", "default link")
    console.print(links)
    p = rp.placement
    stages = Table(title=f"{model} in {args.dtype}: plan ({args.objective})")
    for col in ("bundle", "node", "node id", "address", "device", "layers", "time (ms)"):
        stages.add_column(col)
    for s, st in zip(rp.stages, p.stages, strict=True):
        stages.add_row(
            str(s.bundle_index),
            s.node.name,
            s.node_id,
            s.ip,
            ", ".join(s.devices),
            f"{s.first_layer}-{s.last_layer}",
            f"{st.time * 1e3:.3f}",
        )
    console.print(stages)
    tps = "inf" if p.tokens_per_second is None else f"{p.tokens_per_second:.2f}"
    status = "fits" if p.feasible else f"does not fit: {p.infeasible_reason}"
    t = surveyed.timings
    console.print(
        f"tokens/s {tps}, bottleneck {p.bottleneck * 1e3:.3f} ms ({status}); inventory "
        f"{t.get('inventory', 0):.1f} s, links {t.get('links', 0):.1f} s, solve "
        f"{t.get('solve', 0) * 1e3:.1f} ms. Placement group: strategy PACK, bundle i holds "
        "stage i on its node (label ray.io/node-id).",
        highlight=False,
    )
