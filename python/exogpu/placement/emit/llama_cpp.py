"""llama.cpp over RPC: an rpc-server per node, and the client's flags.

How llama.cpp places layers (src/llama-model.cpp, ``load_tensors``), which
this module inverts:

* The model has ``n_layer`` transformer blocks and an output layer: ``n_layer
  + 1`` units. The token embedding (the input layer) always stays in the
  client's host memory.
* ``-ngl N`` offloads units: with ``i_gpu_start = max(n_layer - N, 0)`` and
  ``act = min(N, n_layer + 1)``, unit ``i`` is offloaded when ``i_gpu_start
  <= i < i_gpu_start + act``; the rest stay on the client's CPU. So the CPU
  keeps the first blocks *and* the output layer, or nothing (``N = n_layer +
  1``), or only the output layer (``N = n_layer``).
* An offloaded unit goes to the first device (in ``--device`` order) whose
  cumulative share of ``--tensor-split``, normalised to 1, exceeds ``(i -
  i_gpu_start) / act`` (``std::upper_bound`` in float32). Giving each device
  its number of units as its share puts every unit exactly where the plan
  does: unit ``i`` lands on the first device whose cumulative count exceeds
  ``i``.
* ``--device`` takes GPU-type devices only, never the CPU: local ones by
  backend name (CUDA0, ROCm0, Vulkan0, MTL0), remote ones by the names the RPC
  backend gives them, ``RPC0``, ``RPC1``, ... counted over the ``--rpc``
  servers in order, each server's devices in the order it exposes them
  (``rpc-server --device``). ``--rpc`` must come before ``--device``: the
  names exist only once the servers are registered.
* With explicit ``-ngl`` and ``--tensor-split``, llama.cpp's ``--fit`` leaves
  the placement alone (it only adjusts arguments the user did not set).
* llama-server and llama-cli separate list values with ``,``; llama-bench
  uses ``,`` between test values, so its device list and split use ``/``.
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

ENGINE = "llama.cpp"
DEFAULT_RPC_PORT = 50052
# llama_max_devices(); every rpc-server serves at least one of them, so
# GGML_RPC_MAX_SERVERS (also 16) is never the tighter limit.
MAX_DEVICES = 16
# ggml's device name of each backend, followed by the device's ordinal.
BACKEND_NAMES = {"cuda": "CUDA", "hip": "ROCm", "vulkan": "Vulkan", "metal": "MTL"}


@dataclass(frozen=True)
class RpcServer:
    """The rpc-server one node runs, exposing the devices the plan uses there."""

    node: str
    endpoint: str  # HOST:PORT the client dials
    devices: tuple[str, ...]  # the node's ggml device names, in the order it exposes them
    device_ids: tuple[str, ...]  # the plan's device ids, same order
    command: Command


@dataclass(frozen=True)
class LlamaCppPlan:
    """What llama.cpp needs to run a plan over RPC.

    ``flags`` are llama-server's and llama-cli's, ``bench_flags``
    llama-bench's; ``server_argv()`` and ``bench_argv()`` put a program and
    the model in front. ``unit_devices`` is the plan's device of every unit
    llama.cpp places (the blocks, then the output layer), what the flags
    make llama.cpp do.
    """

    rpc: tuple[str, ...]  # --rpc endpoints, in stage order
    devices: tuple[str, ...]  # --device names, in stage order
    device_ids: tuple[str, ...]  # the plan's device of each --device entry
    tensor_split: tuple[int, ...]  # units per --device entry
    n_gpu_layers: int
    n_layers: int  # transformer blocks (llama.cpp's n_layer)
    unit_devices: tuple[str, ...]
    servers: tuple[RpcServer, ...]
    client: str | None  # the node that runs llama-server, None for a host outside the plan
    model_path: str
    flags: tuple[str, ...]
    bench_flags: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())

    engine = ENGINE

    def server_argv(self, program: str = "llama-server") -> list[str]:
        """llama-server's (or, with program="llama-cli", llama-cli's) argv."""
        return [program, "-m", self.model_path, *self.flags]

    def bench_argv(self, program: str = "llama-bench") -> list[str]:
        return [program, "-m", self.model_path, *self.bench_flags]

    @property
    def commands(self) -> tuple[Command, ...]:
        """Every rpc-server, then the client: llama-server, and llama-bench."""
        return (
            *(s.command for s in self.servers),
            Command(self.client, tuple(self.server_argv()), what="llama-cli takes the same flags"),
            Command(self.client, tuple(self.bench_argv()), what="or measure it"),
        )

    def render(self) -> str:
        return render_commands(self.commands, self.notes)

    def to_json(self) -> dict[str, Any]:
        return {
            "engine": ENGINE,
            "rpc": list(self.rpc),
            "devices": list(self.devices),
            "device_ids": list(self.device_ids),
            "tensor_split": list(self.tensor_split),
            "n_gpu_layers": self.n_gpu_layers,
            "n_layers": self.n_layers,
            "unit_devices": list(self.unit_devices),
            "rpc_servers": [
                {
                    "node": s.node,
                    "endpoint": s.endpoint,
                    "devices": list(s.devices),
                    "device_ids": list(s.device_ids),
                    "argv": list(s.command.argv),
                }
                for s in self.servers
            ],
            "client": self.client,
            "argv": self.server_argv(),
            "bench_argv": self.bench_argv(),
            "commands": [c.to_json() for c in self.commands],
            "notes": list(self.notes),
        }


def emit_llama_cpp(
    placement: Placement | Mapping[str, Any],
    problem: Problem,
    addresses: Mapping[str, str] | None = None,
    *,
    client: str | None = None,
    rpc_port: int = DEFAULT_RPC_PORT,
    model_path: str = "MODEL.gguf",
    layout: Layout | None = None,
) -> LlamaCppPlan:
    """The rpc-server commands and the client flags that run `placement`.

    `addresses` maps a node to its rpc-server's ``HOST`` or ``HOST:PORT``
    (port `rpc_port` when left out); every node the plan uses needs one,
    except `client`: the node that runs llama-server itself, whose devices
    are then local (its CPU included). With `client` None the client is a
    host outside the plan and every stage runs behind an rpc-server.

    Raises PlanNotExpressible (NodeAddressMissing for a node without an
    address) when llama.cpp's flags cannot say what the plan says.
    """
    layout = layout or Layout.of(problem)
    parts = plan_parts(ENGINE, placement, problem, layout)
    known = {d.node for d in problem.devices}
    if client is not None and client not in known:
        raise PlanNotExpressible(ENGINE, f"the client {client!r} is not a node of the problem")
    where = parse_addresses(addresses, problem, rpc_port)
    notes: list[str] = []

    n_layers = sum(p.blocks for p in parts)
    units = [p for p in parts for _ in range(p.blocks)]
    holder = next((p for p in parts if p.output), None)
    if holder is None:
        holder = units[-1]
        notes.append(
            "the plan has no output layer; llama.cpp's goes with the last block, "
            f"on {holder.device}"
        )
    units.append(holder)

    if layout.embedding:
        first = parts[0]
        if not (first.kind == "cpu" and first.node == client):
            notes.append(
                f"llama.cpp keeps the token embedding in the client's host memory, not on "
                f"{first.device} as the plan does"
            )

    def local_cpu(p: Part) -> bool:
        return p.kind == "cpu" and p.node == client

    on_cpu = [i for i, p in enumerate(units) if local_cpu(p)]
    if not on_cpu:
        n_gpu_layers = n_layers + 1
    elif on_cpu == [n_layers]:
        n_gpu_layers = n_layers  # everything but the output layer
    elif len(on_cpu) == len(units):
        n_gpu_layers = 0
    else:
        cpu = units[on_cpu[0]].device
        raise PlanNotExpressible(
            ENGINE,
            f"it puts {len(on_cpu)} of {len(units)} units on the client's CPU ({cpu}); "
            "llama.cpp keeps on the client's CPU either nothing, only the output layer, "
            "or the first blocks together with the output layer",
        )
    offloaded = units[:n_gpu_layers]  # i_gpu_start is 0 in every case above

    order: list[Part] = []
    for p in offloaded:
        if not order or order[-1] is not p:
            order.append(p)
    if len(order) > MAX_DEVICES:
        raise PlanNotExpressible(
            ENGINE, f"it uses {len(order)} devices; llama.cpp splits over at most {MAX_DEVICES}"
        )

    # Remote devices: one rpc-server per node, in stage order of first use.
    remote: dict[str, list[Part]] = {}
    for p in order:
        if p.node != client:
            remote.setdefault(p.node, []).append(p)
    names: dict[str, str] = {}
    servers: list[RpcServer] = []
    for node, node_parts in remote.items():
        address = where.get(node)
        if address is None:
            raise NodeAddressMissing(ENGINE, node, [p.device for p in node_parts])
        backend = [_backend_name(p, remote=True) for p in node_parts]
        for p in node_parts:
            names[p.device] = f"RPC{len(names)}"
        # rpc-server binds with inet_addr(): an IP literal, else every interface.
        bind = address.host if address.is_ip else "0.0.0.0"
        if not address.is_ip:
            notes.append(
                f"rpc-server on {node} listens on every interface ({address.host} is a name); "
                "it has no authentication: keep it on a trusted network"
            )
        argv = (
            "rpc-server",
            "--host",
            bind,
            "--port",
            str(address.port),
            "--device",
            ",".join(backend),
        )
        servers.append(
            RpcServer(
                node,
                address.endpoint,
                tuple(backend),
                tuple(p.device for p in node_parts),
                Command(node, argv),
            )
        )
    for p in order:
        if p.node == client:
            names[p.device] = _backend_name(p, remote=False)

    rpc = tuple(s.endpoint for s in servers)
    devices = tuple(names[p.device] for p in order)
    split = tuple(sum(1 for u in offloaded if u is p) for p in order)
    flags: list[str] = []
    bench: list[str] = []
    if rpc:  # before --device: the RPC devices get their names when registered
        flags += ["--rpc", ",".join(rpc)]
        bench += ["-rpc", ",".join(rpc)]
    if devices:
        flags += ["--device", ",".join(devices), "--split-mode", "layer"]
        flags += ["--tensor-split", ",".join(map(str, split))]
        bench += ["-dev", "/".join(devices), "-sm", "layer", "-ts", "/".join(map(str, split))]
    flags += ["-ngl", str(n_gpu_layers)]
    bench += ["-ngl", str(n_gpu_layers)]
    return LlamaCppPlan(
        rpc=rpc,
        devices=devices,
        device_ids=tuple(p.device for p in order),
        tensor_split=split,
        n_gpu_layers=n_gpu_layers,
        n_layers=n_layers,
        unit_devices=tuple(p.device for p in units),
        servers=tuple(servers),
        client=client,
        model_path=model_path,
        flags=tuple(flags),
        bench_flags=tuple(bench),
        notes=tuple(notes),
    )


def default_split_stages(
    problem: Problem, layout: Layout | None = None
) -> list[tuple[str, int, int]]:
    """The stages llama.cpp's default split gives (no --tensor-split): every
    device of the problem in --device in the problem's order, each sharing
    in proportion to its free memory (``free_memory_bytes``, else
    ``memory_bytes``), everything offloaded. Units are the blocks and the
    output layer, placed by llama.cpp's rule in float32; the embedding, which
    llama.cpp keeps on the client, is counted with the first stage.
    (device id, first layer, last layer) per stage, for evaluate()."""
    import numpy as np

    layout = layout or Layout.of(problem)
    n = len(problem.layers)
    n_layers = n - layout.embedding - layout.output
    if n_layers < 1:
        raise PlanNotExpressible(ENGINE, "the model has no transformer block between its ends")
    free = [d.free_memory_bytes or d.memory_bytes for d in problem.devices]
    cumulative = np.cumsum(np.array(free, dtype=np.float32), dtype=np.float32)
    cumulative = cumulative / cumulative[-1]
    units = n_layers + 1
    owner = [
        int(np.searchsorted(cumulative, np.float32(i) / np.float32(units), side="right"))
        for i in range(units)
    ]
    # plan layer of each unit: the blocks, then the output (the last block without one)
    layer_owner = ([owner[0]] if layout.embedding else []) + owner[:n_layers]
    if layout.output:
        layer_owner.append(owner[n_layers])
    stages: list[tuple[str, int, int]] = []
    for layer, d in enumerate(layer_owner):
        device = problem.devices[d].id
        if stages and stages[-1][0] == device:
            stages[-1] = (device, stages[-1][1], layer)
        else:
            stages.append((device, layer, layer))
    return stages


def _backend_name(p: Part, *, remote: bool) -> str:
    """ggml's name for the device on its own host."""
    if p.kind == "cpu":
        # Reached only for a CPU behind an rpc-server: the client's own CPU is
        # never a --device entry (it takes the units -ngl leaves behind).
        assert remote
        return "CPU"
    prefix = BACKEND_NAMES.get(p.kind)
    if prefix is None:
        raise PlanNotExpressible(ENGINE, f"llama.cpp has no {p.kind} backend for {p.device}")
    return f"{prefix}{p.index}"
