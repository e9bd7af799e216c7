"""`exogpu bench memory`: the memory probe's sweep as a table, JSON or a plot."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import exogpu
from exogpu import probe
from exogpu.cli.measurement_format import format_bytes, format_seconds, parse_bytes


def register(subparsers: Any) -> None:
    bench = subparsers.add_parser("bench", help="measure this node's devices")
    kinds = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCH")
    memory = kinds.add_parser(
        "memory",
        help="copy bandwidth over a sweep of sizes, small-copy latency, allocation latency",
        description=(
            "Copy bandwidth of one device over a sweep of sizes (bytes counted once; "
            "median of samples after warm-up), small-copy round trips and allocation "
            "latency."
        ),
    )
    memory.add_argument("--device", metavar="ID", help="device id (default: the first device)")
    memory.add_argument("--peer", metavar="ID", help="also measure copies to this device")
    memory.add_argument(
        "--kinds", metavar="K,K", help=f"copy kinds to measure (of {', '.join(probe.COPY_KINDS)})"
    )
    memory.add_argument(
        "--max-bytes",
        type=parse_bytes,
        default=1 << 30,
        metavar="N",
        help="largest copy (e.g. 64M, 1G; default 1G, bounded by free memory)",
    )
    memory.add_argument("--samples", type=int, default=5, help="timed samples per point")
    memory.add_argument("--json", action="store_true", help="print the results as JSON")
    memory.add_argument("--plot", type=Path, metavar="FILE.png", help="write a bandwidth plot")
    memory.set_defaults(func=run_memory)


def _device_id(requested: str | None) -> str:
    if requested:
        return str(exogpu.device(requested).id)
    devices = exogpu.devices()
    if not devices:
        raise exogpu.InvalidArgument("no devices found")
    return str(devices[0].id)


def run_memory(args: argparse.Namespace) -> int:
    out = Console()
    err = Console(stderr=True)
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        # Said before the sweep, not after it.
        err.print(
            "[red]exogpu bench memory: --plot needs matplotlib (pip install 'exogpu[plot]')[/red]"
        )
        return 2
    try:
        device_id = _device_id(args.device)
        kinds = [k.strip() for k in args.kinds.split(",") if k.strip()] if args.kinds else None
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        ) as bar:
            task = bar.add_task(f"{device_id}: starting", total=None)

            def on_progress(p: probe.Progress) -> None:
                if p.phase == "start":
                    what = "allocating and touching buffers"
                else:
                    what = f"{p.phase} {format_bytes(p.bytes)}" if p.bytes else p.phase
                bar.update(
                    task, total=p.total, completed=p.step, description=f"{device_id}: {what}"
                )

            result = probe.probe_memory(
                device_id,
                kinds=kinds,
                max_bytes=args.max_bytes,
                samples=args.samples,
                peer=args.peer,
                progress=on_progress,
            )
    except (exogpu.Error, ValueError) as e:
        err.print(f"[red]exogpu bench memory: {e}[/red]")
        return 2
    if args.plot is not None:
        from exogpu.cli.bench_plot import plot_bandwidth

        plot_bandwidth(result, args.plot)
        err.print(f"plot written to {args.plot}")
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_tables(out, result)
    return 0


def _print_tables(console: Console, result: probe.MemoryProbe) -> None:
    kinds = result.kinds()
    timings = sorted({c.timing.replace("_", " ") for c in result.copies})
    table = Table(
        title=f"{result.device}: copy bandwidth in GB/s (median, bytes counted once)",
        caption=f"timed with {' and '.join(timings)}" if timings else None,
    )
    table.add_column("size", justify="right")
    for kind in kinds:
        label = "h2d+d2h" if kind == "bidirectional" else kind.replace("_", " ")
        table.add_column(label, justify="right")
    by_point = {(c.kind, c.bytes): c for c in result.copies}
    for size in sorted({c.bytes for c in result.copies}):
        cells = [format_bytes(size)]
        for kind in kinds:
            c = by_point.get((kind, size))
            cells.append(f"{c.bandwidth / 1e9:.2f}" if c else "")
        table.add_row(*cells)
    console.print(table)

    if result.latency:
        lat = Table(
            title="small-copy round trip (write, read back, wait; median)",
            caption="sync: synchronous copies (exogpu.write/read); "
            "stream: two enqueued copies and a synchronize",
        )
        lat.add_column("size", justify="right")
        paths = list(dict.fromkeys(x.path for x in result.latency))
        for path in paths:
            lat.add_column(path, justify="right")
        by_path = {(x.path, x.bytes): x for x in result.latency}
        for size in sorted({x.bytes for x in result.latency}):
            cells = [format_bytes(size)]
            for path in paths:
                x = by_path.get((path, size))
                cells.append(format_seconds(x.seconds.median) if x else "")
            lat.add_row(*cells)
        console.print(lat)
    if result.allocation:
        alloc = Table(title="allocate + free")
        alloc.add_column("path")
        alloc.add_column("size", justify="right")
        alloc.add_column("median", justify="right")
        alloc.add_column("max", justify="right")
        for a in result.allocation:
            alloc.add_row(
                a.path,
                format_bytes(a.bytes),
                format_seconds(a.seconds.median),
                format_seconds(a.seconds.max),
            )
        console.print(alloc)
