"""prima.cpp: one rank per node, in a ring, with a layer window each.

How prima.cpp places layers (src/llama.cpp, ``this_layer_is_mine`` and
``llm_load_tensors``; common/arg.cpp), which this module inverts:

* Every node runs one process, its rank; ``--next`` is the next rank's
  address (the last rank's next is rank 0) and ``--master`` rank 0's.
* ``-lw a,b,c`` (given to rank 0, one positive value per rank, in rank
  order) is the number of transformer blocks each rank computes. Blocks are
  dealt out in windows in the order rank 1, 2, ..., n-1 and rank 0 last:
  rank 0 embeds the token, sends it round the ring, runs its own window and
  the output layer. A plan's stage order therefore gives the ranks: the node
  of the last stage is rank 0, the others are 1, 2, ... in stage order.
* ``-ngl k`` (each rank's own) runs the *last* k blocks of the rank's window
  on its GPU (CUDA or Metal, one per rank), the others on its CPU.
* The output layer is on rank 0's CPU unless rank 0 passes
  ``--keep-out-in-cuda``; the token embedding is always on rank 0's CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from exogpu.placement.emit._plan import (
    Command,
    Layout,
    NodeAddressMissing,
    Part,
    PlanNotExpressible,
    parse_addresses,
    plan_parts,
    render_commands,
)
from exogpu.placement.problem import Problem
from exogpu.placement.result import Placement

ENGINE = "prima.cpp"
GPU_KINDS = ("cuda", "metal")
MAX_RANKS = 32  # the layer window array's size
# prima.cpp listens on fixed ports; the address's port is not used.
_UNUSED_PORT = 9000


@dataclass(frozen=True)
class PrimaRank:
    rank: int
    node: str
    host: str
    layer_window: int  # transformer blocks this rank computes
    gpu_layers: int  # of those, run on its GPU (the window's last ones)
    devices: tuple[str, ...]  # the plan's devices on this node, in stage order
    command: Command


@dataclass(frozen=True)
class PrimaPlan:
    world: int
    layer_window: tuple[int, ...]  # -lw, in rank order
    ranks: tuple[PrimaRank, ...]  # in rank order
    model_path: str
    notes: tuple[str, ...] = field(default=())

    engine = ENGINE

    @property
    def commands(self) -> tuple[Command, ...]:
        # The workers, then rank 0, which feeds the ring.
        return tuple(r.command for r in (*self.ranks[1:], self.ranks[0]))

    def render(self) -> str:
        return render_commands(self.commands, self.notes)

    def to_json(self) -> dict[str, Any]:
        return {
            "engine": ENGINE,
            "world": self.world,
            "layer_window": list(self.layer_window),
            "ranks": [
                {
                    "rank": r.rank,
                    "node": r.node,
                    "host": r.host,
                    "layer_window": r.layer_window,
                    "gpu_layers": r.gpu_layers,
                    "devices": list(r.devices),
                    "argv": list(r.command.argv),
                }
                for r in self.ranks
            ],
            "commands": [c.to_json() for c in self.commands],
            "notes": list(self.notes),
        }


def emit_prima_cpp(
    placement: Placement | Mapping[str, Any],
    problem: Problem,
    addresses: Mapping[str, str] | None = None,
    *,
    model_path: str = "MODEL.gguf",
    layout: Layout | None = None,
) -> PrimaPlan:
    """Each node's llama-cli command for `placement` in prima.cpp.

    `addresses` maps each node to the HOST the others reach it at (a port,
    if given, is not used: prima.cpp listens on fixed ports). A single-node
    plan needs none.

    Raises PlanNotExpressible when prima.cpp's flags cannot say what the plan
    says: a node's stages not adjacent, two GPUs on one node, a GPU stage
    before a CPU stage on one node, a GPU other than CUDA or Metal, a node
    with no transformer block.
    """
    layout = layout or Layout.of(problem)
    parts = plan_parts(ENGINE, placement, problem, layout)
    where = parse_addresses(addresses, problem, _UNUSED_PORT)
    notes: list[str] = []

    runs: list[list[Part]] = []
    for p in parts:
        if runs and runs[-1][0].node == p.node:
            runs[-1].append(p)
        elif any(r[0].node == p.node for r in runs):
            raise PlanNotExpressible(
                ENGINE,
                f"node {p.node} runs stages that are not adjacent ({p.device} comes back after "
                "another node's); prima.cpp gives each node one window of blocks",
            )
        else:
            runs.append([p])
    if len(runs) > MAX_RANKS:
        raise PlanNotExpressible(ENGINE, f"it uses {len(runs)} nodes; prima.cpp takes at most 32")

    windows: list[tuple[int, int]] = []  # (blocks, gpu blocks) per run
    for run in runs:
        gpus = [p for p in run if p.kind != "cpu"]
        node = run[0].node
        if len(gpus) > 1:
            raise PlanNotExpressible(
                ENGINE,
                f"node {node} runs stages on {len(gpus)} GPUs "
                f"({', '.join(p.device for p in gpus)}); a prima.cpp rank drives one",
            )
        gpu = gpus[0] if gpus else None
        if gpu is not None and gpu.kind not in GPU_KINDS:
            raise PlanNotExpressible(
                ENGINE, f"{gpu.device} is a {gpu.kind} device; prima.cpp runs on CUDA or Metal"
            )
        if gpu is not None and any(p.blocks for p in run[run.index(gpu) + 1 :]):
            raise PlanNotExpressible(
                ENGINE,
                f"on node {node} the plan runs blocks on the CPU after the GPU ({gpu.device}); "
                "prima.cpp runs the last blocks of a window on the GPU",
            )
        blocks = sum(p.blocks for p in run)
        if blocks == 0:
            raise PlanNotExpressible(
                ENGINE,
                f"node {node} holds no transformer block; prima.cpp's -lw gives every rank "
                "at least one",
            )
        windows.append((blocks, gpu.blocks if gpu is not None else 0))

    # The last stage's node is rank 0; the others follow in stage order.
    rank_of_run = [*range(1, len(runs)), 0]
    world = len(runs)
    order = sorted(range(world), key=lambda j: rank_of_run[j])  # runs in rank order
    hosts: dict[int, str] = {}
    if world > 1:
        for j in order:
            node = runs[j][0].node
            address = where.get(node)
            if address is None:
                raise NodeAddressMissing(ENGINE, node, [p.device for p in runs[j]])
            hosts[rank_of_run[j]] = address.host

    head = runs[-1]
    keep_out_in_cuda = False
    if layout.output:
        out = head[-1]
        if out.kind == "cuda":
            keep_out_in_cuda = True
        elif out.kind != "cpu":
            notes.append(
                f"prima.cpp runs the output layer on {out.node}'s CPU, not on {out.device}"
            )
    if layout.embedding and not (parts[0].kind == "cpu" and parts[0].node == head[0].node):
        notes.append(
            f"prima.cpp keeps the token embedding on rank 0's CPU ({head[0].node}), not on "
            f"{parts[0].device} as the plan does"
        )

    layer_window = tuple(windows[j][0] for j in order)
    ranks: list[PrimaRank] = []
    for j in order:
        rank = rank_of_run[j]
        node = runs[j][0].node
        blocks, gpu_blocks = windows[j]
        argv = ["llama-cli", "-m", model_path]
        if world > 1:
            argv += ["--world", str(world), "--rank", str(rank)]
            argv += ["--master", hosts[0], "--next", hosts[(rank + 1) % world]]
        if rank == 0 and world > 1:
            argv += ["-lw", ",".join(map(str, layer_window))]
        if gpu_blocks:
            argv += ["-ngl", str(gpu_blocks)]
        if rank == 0 and keep_out_in_cuda:
            argv += ["--keep-out-in-cuda"]
        ranks.append(
            PrimaRank(
                rank=rank,
                node=node,
                host=hosts.get(rank, ""),
                layer_window=blocks,
                gpu_layers=gpu_blocks,
                devices=tuple(p.device for p in runs[j]),
                command=Command(node, tuple(argv), what=f"rank {rank}"),
            )
        )
    return PrimaPlan(
        world=world,
        layer_window=layer_window,
        ranks=tuple(ranks),
        model_path=model_path,
        notes=tuple(notes),
    )
