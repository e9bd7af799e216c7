"""llama.cpp RPC flags: the emitted split, read back through llama.cpp's own
placement rule, puts every layer where the plan does."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exogpu import InvalidArgument
from exogpu.placement import Placement, Problem, Stage
from exogpu.placement.emit import (
    LlamaCppPlan,
    NodeAddressMissing,
    PlanNotExpressible,
    emit,
    emit_llama_cpp,
)
from exogpu.placement.emit.llama_cpp import default_split_stages

KINDS = ("cpu", "cuda", "hip", "vulkan", "metal")
# ggml's device names, as llama.cpp prints them in --list-devices.
GGML_PREFIX = {"CUDA": "cuda", "ROCm": "hip", "Vulkan": "vulkan", "MTL": "metal", "CPU": "cpu"}


def problem_of(
    devices: Sequence[tuple[str, str]], n_blocks: int, embedding: bool = True, output: bool = True
) -> Problem:
    """A problem with the catalog's layer names and the given (id, node) devices."""
    names = (["embed"] if embedding else []) + [f"block{i}" for i in range(n_blocks)]
    names += ["output"] if output else []
    return Problem.from_json(
        {
            "version": 2,
            "layers": [{"name": n, "weight_bytes": 1, "flops_per_token": 1.0} for n in names],
            "devices": [
                {
                    "id": d,
                    "node": node,
                    "memory_bytes": 2**40,
                    "flops": 1e12,
                    "memory_bandwidth": 1e11,
                }
                for d, node in devices
            ],
            "default_link": {"bandwidth": 1e9, "latency": 1e-4},
        }
    )


def placement_of(stages: Sequence[tuple[str, int, int]]) -> Placement:
    return Placement(
        objective="latency",
        strategy="given",
        value=0.0,
        stages=tuple(Stage(d, first, last, 0.0, 0) for d, first, last in stages),
        hops=(),
        latency=0.0,
        bottleneck=0.0,
        tokens_per_second=None,
        optimal=False,
        lower_bound=0.0,
        solve_seconds=0.0,
        max_memory_fraction=0.0,
    )


def flag(argv: Sequence[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def llama_cpp_places(
    n_layer: int, n_gpu_layers: int, tensor_split: Sequence[float], n_devices: int
) -> list[int]:
    """llama.cpp's rule (llama_model::load_tensors), done again here: the
    --device index of every unit (n_layer blocks, then the output layer),
    -1 for the client's CPU. Float32 throughout, as llama.cpp computes it."""
    splits = np.zeros(n_devices, dtype=np.float32)
    splits[: len(tensor_split)] = tensor_split
    cumulative = np.cumsum(splits, dtype=np.float32)
    if n_devices:
        cumulative = cumulative / cumulative[-1]
    i_gpu_start = max(n_layer - n_gpu_layers, 0)
    act = 0 if n_devices == 0 else min(n_gpu_layers, n_layer + 1)
    out = []
    for il in range(n_layer + 1):
        if il < i_gpu_start or il - i_gpu_start >= act:
            out.append(-1)
            continue
        x = np.float32(il - i_gpu_start) / np.float32(act)
        out.append(int(np.searchsorted(cumulative, x, side="right")))
    return out


def devices_behind_names(
    plan: LlamaCppPlan, problem: Problem, addresses: dict[str, str], client: str | None
) -> list[str]:
    """The plan device each --device name reaches, worked out from the
    commands alone: RPC names count over the --rpc servers in order, each
    server's devices in its own --device order; other names are the
    client's backends."""
    argv = plan.server_argv()
    rpc = (flag(argv, "--rpc") or "").split(",") if "--rpc" in argv else []
    node_at = {f"{a}:50052" if ":" not in a else a: n for n, a in addresses.items()}
    servers = {c.node: c.argv for c in plan.commands if c.argv[0] == "rpc-server"}
    exposed: list[tuple[str, str]] = []
    for endpoint in rpc:
        node = node_at[endpoint]
        server = servers[node]
        assert flag(server, "--port") == endpoint.rsplit(":", 1)[1]
        exposed += [(node, name) for name in (flag(server, "--device") or "").split(",")]

    def device(node: str | None, name: str) -> str:
        m = re.fullmatch(r"(CUDA|ROCm|Vulkan|MTL|CPU)(\d*)", name)
        assert m, name
        kind, index = GGML_PREFIX[m.group(1)], int(m.group(2) or 0)
        matches = [
            d.id for d in problem.devices if d.node == node and d.id.endswith(f"{kind}:{index}")
        ]
        assert len(matches) == 1, (node, name, matches)
        return matches[0]

    out = []
    for name in (flag(argv, "--device") or "").split(",") if "--device" in argv else []:
        m = re.fullmatch(r"RPC(\d+)", name)
        out.append(device(*exposed[int(m.group(1))]) if m else device(client, name))
    return out


@st.composite
def rpc_plans(draw: st.DrawFn) -> tuple[Problem, Placement, dict[str, str], str | None]:
    devices: list[tuple[str, str]] = []
    for n in range(draw(st.integers(1, 4))):
        kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=4))
        counts: dict[str, int] = {}
        for kind in kinds:
            if kind == "cpu" and "cpu" in counts:
                continue  # one CPU per node
            counts[kind] = counts.get(kind, 0) + 1
            devices.append((f"n{n}:{kind}:{counts[kind] - 1}", f"n{n}"))
    embedding, output = draw(st.booleans()), draw(st.booleans())
    problem = problem_of(devices, draw(st.integers(1, 150)), embedding, output)
    n = len(problem.layers)
    nodes = sorted({node for _, node in devices})
    client = draw(st.sampled_from([None, *nodes]))
    order = draw(st.permutations(devices))
    # Half the time the client's CPU, if it has one, takes the last layer alone.
    cpu = next((d for d in order if d[0] == f"{client}:cpu:0"), None)
    tail = []
    if cpu is not None and n > 1 and len(order) > 1 and draw(st.booleans()):
        order = [d for d in order if d != cpu]
        tail, n = [(cpu[0], n - 1, n - 1)], n - 1
    k = draw(st.integers(1, min(len(order), n)))
    cuts = (
        sorted(draw(st.lists(st.integers(1, n - 1), min_size=k - 1, max_size=k - 1, unique=True)))
        if k > 1
        else []
    )
    bounds = [0, *cuts, n]
    placement = placement_of([(order[i][0], bounds[i], bounds[i + 1] - 1) for i in range(k)] + tail)
    ports = draw(
        st.lists(
            st.sampled_from([None, 50052, 50053, 6000]), min_size=len(nodes), max_size=len(nodes)
        )
    )
    addresses = {
        node: f"10.0.0.{i + 1}" if port is None else f"10.0.0.{i + 1}:{port}"
        for i, (node, port) in enumerate(zip(nodes, ports, strict=True))
    }
    return problem, placement, addresses, client


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rpc_plans())
def test_llama_cpp_puts_every_unit_where_the_plan_does(
    case: tuple[Problem, Placement, dict[str, str], str | None],
) -> None:
    problem, placement, addresses, client = case
    layer_device = placement.layer_devices()
    embedding = problem.layers[0].name == "embed"
    # llama.cpp's units: the blocks, then the output layer, which sits with
    # the plan's last layer (the output head, or the last block without one).
    wanted = layer_device[embedding : len(layer_device) - (problem.layers[-1].name == "output")]
    wanted.append(layer_device[-1])
    kind = {d.id: d.id.split(":")[1] for d in problem.devices}
    node = {d.id: d.node for d in problem.devices}
    on_client_cpu = [i for i, d in enumerate(wanted) if kind[d] == "cpu" and node[d] == client]
    expressible = on_client_cpu in ([], [len(wanted) - 1], list(range(len(wanted))))
    if not expressible:
        with pytest.raises(PlanNotExpressible, match="client's CPU"):
            emit_llama_cpp(placement, problem, addresses, client=client)
        return

    plan = emit_llama_cpp(placement, problem, addresses, client=client)
    argv = plan.server_argv()
    if "--rpc" in argv and "--device" in argv:
        assert argv.index("--rpc") < argv.index("--device")
    behind = devices_behind_names(plan, problem, addresses, client)
    split = [float(x) for x in (flag(argv, "--tensor-split") or "").split(",") if x]
    ngl = int(flag(argv, "-ngl") or -1)
    client_cpu = next((d for d in kind if kind[d] == "cpu" and node[d] == client), None)
    got = [
        client_cpu if i < 0 else behind[i]
        for i in llama_cpp_places(len(wanted) - 1, ngl, split, len(behind))
    ]
    assert got == wanted
    assert plan.unit_devices == tuple(wanted)
    # llama-bench gets the same split and devices, '/'-separated.
    bench = plan.bench_argv()
    assert flag(bench, "-rpc") == flag(argv, "--rpc")
    assert (flag(bench, "-ts") or "").split("/") == (flag(argv, "--tensor-split") or "").split(",")
    assert (flag(bench, "-dev") or "").split("/") == (flag(argv, "--device") or "").split(",")
    assert flag(bench, "-ngl") == str(ngl)


HOME = [
    ("mac:metal:0", "mac"),
    ("pc:cuda:0", "pc"),
    ("pc:cuda:1", "pc"),
    ("laptop:vulkan:0", "laptop"),
]
HOME_ADDRESSES = {"mac": "192.168.1.10", "pc": "192.168.1.20:50060", "laptop": "192.168.1.30"}


def test_a_three_stage_plan_reads_as_a_user_would_type_it() -> None:
    problem = problem_of(HOME, 80)  # embed, 80 blocks, output: 82 layers
    placement = placement_of([("pc:cuda:0", 0, 30), ("mac:metal:0", 31, 70), ("pc:cuda:1", 71, 81)])
    plan = emit_llama_cpp(placement, problem, HOME_ADDRESSES, model_path="llama-70b.gguf")
    # pc serves cuda:0 (RPC0) and cuda:1 (RPC1) from one rpc-server; mac's GPU is RPC2.
    assert plan.server_argv() == [
        "llama-server", "-m", "llama-70b.gguf",
        "--rpc", "192.168.1.20:50060,192.168.1.10:50052",
        "--device", "RPC0,RPC2,RPC1", "--split-mode", "layer",
        "--tensor-split", "30,40,11", "-ngl", "81",
    ]  # fmt: skip
    assert plan.bench_argv()[3:] == [
        "-rpc", "192.168.1.20:50060,192.168.1.10:50052",
        "-dev", "RPC0/RPC2/RPC1", "-sm", "layer", "-ts", "30/40/11", "-ngl", "81",
    ]  # fmt: skip
    servers = {s.node: s.command.argv for s in plan.servers}
    assert servers == {
        "pc": (
            "rpc-server",
            "--host",
            "192.168.1.20",
            "--port",
            "50060",
            "--device",
            "CUDA0,CUDA1",
        ),
        "mac": ("rpc-server", "--host", "192.168.1.10", "--port", "50052", "--device", "MTL0"),
    }
    assert any("token embedding" in note for note in plan.notes)
    text = plan.render()
    assert "# on pc\nrpc-server --host 192.168.1.20" in text
    assert "llama-bench -m llama-70b.gguf -rpc" in text
    data = plan.to_json()
    assert data["tensor_split"] == [30, 40, 11] and data["n_gpu_layers"] == 81
    assert data["device_ids"] == ["pc:cuda:0", "mac:metal:0", "pc:cuda:1"]


def test_the_clients_own_devices_are_local_and_its_cpu_may_keep_the_output() -> None:
    devices = [("pc:cpu:0", "pc"), ("pc:cuda:0", "pc"), ("mac:metal:0", "mac")]
    problem = problem_of(devices, 10)  # 12 layers
    plan = emit_llama_cpp(
        placement_of([("pc:cuda:0", 0, 5), ("mac:metal:0", 6, 10), ("pc:cpu:0", 11, 11)]),
        problem,
        {"mac": "10.0.0.2"},
        client="pc",
    )
    # the output layer (unit 10) stays on the client's CPU: -ngl 10 offloads only the blocks
    assert plan.flags == (
        "--rpc", "10.0.0.2:50052", "--device", "CUDA0,RPC0", "--split-mode", "layer",
        "--tensor-split", "5,5", "-ngl", "10",
    )  # fmt: skip
    assert [s.node for s in plan.servers] == ["mac"]
    everything_here = emit_llama_cpp(placement_of([("pc:cpu:0", 0, 11)]), problem, client="pc")
    assert everything_here.flags == ("-ngl", "0") and not everything_here.notes


def test_blocks_on_the_clients_cpu_before_the_output_are_refused() -> None:
    devices = [("pc:cpu:0", "pc"), ("pc:cuda:0", "pc")]
    problem = problem_of(devices, 10)
    with pytest.raises(PlanNotExpressible, match=r"client's CPU \(pc:cpu:0\)"):
        emit_llama_cpp(
            placement_of([("pc:cpu:0", 0, 4), ("pc:cuda:0", 5, 11)]), problem, client="pc"
        )
    # the same plan with the client elsewhere runs the CPU behind an rpc-server
    remote = emit_llama_cpp(
        placement_of([("pc:cpu:0", 0, 4), ("pc:cuda:0", 5, 11)]), problem, {"pc": "10.0.0.9"}
    )
    assert remote.servers[0].devices == ("CPU", "CUDA0")
    assert remote.tensor_split == (4, 7) and remote.n_gpu_layers == 11


def test_a_node_without_an_address_is_named() -> None:
    problem = problem_of(HOME, 8)
    placement = placement_of([("mac:metal:0", 0, 4), ("laptop:vulkan:0", 5, 9)])
    with pytest.raises(NodeAddressMissing, match=r"'laptop'.*laptop:vulkan:0") as caught:
        emit_llama_cpp(placement, problem, {"mac": "10.0.0.1"})
    assert caught.value.node == "laptop"
    assert isinstance(caught.value, InvalidArgument)


@pytest.mark.parametrize(
    ("addresses", "message"),
    [
        ({"pc": "10.0.0.1,10.0.0.2"}, "not a host name or IP address"),
        ({"pc": "host name"}, "not a host name or IP address"),
        ({"pc": "10.0.0.1:99999"}, "port must be a number"),
        ({"nowhere": "10.0.0.1"}, "no device of the problem is on it"),
        ({"pc": "10.0.0.1", "mac": "10.0.0.1:50052"}, "the same address"),
    ],
)
def test_bad_addresses_are_refused(addresses: dict[str, str], message: str) -> None:
    problem = problem_of(HOME, 4)
    with pytest.raises(InvalidArgument, match=message):
        emit_llama_cpp(placement_of([("pc:cuda:0", 0, 5)]), problem, addresses)


def test_ipv6_addresses_go_in_brackets() -> None:
    problem = problem_of(HOME, 4)
    plan = emit_llama_cpp(placement_of([("pc:cuda:0", 0, 5)]), problem, {"pc": "[fd00::2]:7000"})
    assert plan.rpc == ("[fd00::2]:7000",)
    assert plan.servers[0].command.argv[:3] == ("rpc-server", "--host", "fd00::2")


def test_devices_llama_cpp_cannot_drive_are_refused() -> None:
    problem = problem_of([("win:directml:0", "win"), ("pc:cuda:0", "pc")], 4)
    with pytest.raises(PlanNotExpressible, match="no directml backend for win:directml:0"):
        emit_llama_cpp(placement_of([("win:directml:0", 0, 5)]), problem, {"win": "10.0.0.3"})
    odd = problem_of([("gpu-a", "pc")], 4)
    with pytest.raises(PlanNotExpressible, match="cannot tell which backend device 'gpu-a' is"):
        emit_llama_cpp(placement_of([("gpu-a", 0, 5)]), odd, {"pc": "10.0.0.3"})


def test_more_devices_than_llama_cpp_splits_over_are_refused() -> None:
    devices = [(f"n{i}:cuda:0", f"n{i}") for i in range(17)]
    problem = problem_of(devices, 30)
    # every device holds a block: the first the embedding and block 0, the last the rest
    stages = [
        (d, 0 if i == 0 else i + 1, i + 1 if i < 16 else 31) for i, (d, _) in enumerate(devices)
    ]
    placement = placement_of(stages)
    addresses = {node: f"10.0.1.{i}" for i, (_, node) in enumerate(devices)}
    with pytest.raises(PlanNotExpressible, match=r"17 devices; llama\.cpp splits over at most 16"):
        emit_llama_cpp(placement, problem, addresses)
    assert len(emit_llama_cpp(placement_of([(d, 0, 31) for d, _ in devices[:1]]), problem,
                              addresses).devices) == 1  # fmt: skip


def test_a_placement_that_is_not_the_problems_is_refused() -> None:
    problem = problem_of(HOME, 4)
    with pytest.raises(InvalidArgument, match="not a device of the problem"):
        emit_llama_cpp(placement_of([("elsewhere:cuda:0", 0, 5)]), problem)
    with pytest.raises(InvalidArgument, match=r"placement covers layers 0\.\.3"):
        emit_llama_cpp(placement_of([("pc:cuda:0", 0, 3)]), problem, {"pc": "10.0.0.1"})
    with pytest.raises(InvalidArgument, match="engine must be one of"):
        emit("llama", placement_of([("pc:cuda:0", 0, 5)]), problem)
    with pytest.raises(PlanNotExpressible, match="client 'moon' is not a node"):
        emit_llama_cpp(placement_of([("pc:cuda:0", 0, 5)]), problem, client="moon")


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(1, 2**40), min_size=1, max_size=8),
    st.integers(1, 130),
    st.booleans(),
    st.booleans(),
)
def test_default_split_stages_follow_llama_cpps_rule(
    free: list[int], n_blocks: int, embedding: bool, output: bool
) -> None:
    devices = [(f"n{i}:cuda:0", f"n{i}") for i in range(len(free))]
    problem = problem_of(devices, n_blocks, embedding, output)
    problem = Problem.from_json(
        {
            **problem.to_json(),
            "devices": [
                {**d, "free_memory_bytes": f}
                for d, f in zip(problem.to_json()["devices"], free, strict=True)
            ],
        }
    )
    stages = default_split_stages(problem)
    layer_device = placement_of(stages).layer_devices()
    assert len(layer_device) == len(problem.layers)
    wanted = [devices[i][0] for i in llama_cpp_places(n_blocks, n_blocks + 1, free, len(free))]
    # the blocks, then the output layer (which, without one, is the last block's)
    assert layer_device[embedding : embedding + n_blocks] == wanted[:n_blocks]
    assert layer_device[-1] == (wanted[n_blocks] if output else wanted[n_blocks - 1])
    if embedding:  # the embedding is counted with the first stage
        assert layer_device[0] == layer_device[1]
