"""vLLM's pipeline partition and prima.cpp's layer windows, read back through
each engine's own rule."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exogpu.placement import Placement
from exogpu.placement.emit import PlanNotExpressible, PrimaPlan, emit_prima_cpp, emit_vllm
from test_emit_llama_cpp import flag, placement_of, problem_of

GPUS = [("a:cuda:0", "a"), ("a:cuda:1", "a"), ("b:cuda:0", "b"), ("c:cuda:0", "c")]


def test_vllm_partition_counts_blocks_per_rank_in_stage_order() -> None:
    problem = problem_of(GPUS, 61)  # DeepSeek-V3's 61 blocks, embed and head: 63 layers
    placement = placement_of([("b:cuda:0", 0, 20), ("a:cuda:1", 21, 40), ("a:cuda:0", 41, 62)])
    plan = emit_vllm(placement, problem, model="deepseek-ai/DeepSeek-V3")
    # the embedding rides on rank 0 and the head on the last: 20 + 20 + 21 blocks
    assert plan.layer_partition == (20, 20, 21)
    assert sum(plan.layer_partition) == 61
    assert plan.pipeline_parallel_size == 3 and plan.tensor_parallel_size == 1
    assert [s.device for s in plan.stages] == ["b:cuda:0", "a:cuda:1", "a:cuda:0"]
    assert plan.env == {"VLLM_PP_LAYER_PARTITION": "20,20,21"}
    assert plan.argv == [
        "vllm", "serve", "deepseek-ai/DeepSeek-V3", "--pipeline-parallel-size", "3",
        "--tensor-parallel-size", "1", "--distributed-executor-backend", "ray",
    ]  # fmt: skip
    assert plan.render().splitlines()[1].startswith("VLLM_PP_LAYER_PARTITION=20,20,21 vllm serve")
    assert plan.to_json()["layer_partition"] == [20, 20, 21]


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 200), st.data())
def test_vllm_partition_sums_to_the_blocks_and_follows_the_stages(
    n_blocks: int, data: st.DataObject
) -> None:
    problem = problem_of(GPUS, n_blocks)
    n = n_blocks + 2
    k = data.draw(st.integers(1, min(4, n_blocks)))
    # every stage holds a block: cuts fall between blocks 1..n_blocks-1 (layers 2..n-2)
    cuts = (
        sorted(
            data.draw(st.lists(st.integers(2, n - 2), min_size=k - 1, max_size=k - 1, unique=True))
        )
        if k > 1
        else []
    )
    bounds = [0, *cuts, n]
    order = data.draw(st.permutations([d for d, _ in GPUS]))
    placement = placement_of([(order[i], bounds[i], bounds[i + 1] - 1) for i in range(k)])
    plan = emit_vllm(placement, problem)
    assert sum(plan.layer_partition) == n_blocks
    # vLLM's get_pp_indices with the partition: rank r owns blocks [start, start + count)
    start = 0
    layer_device = placement.layer_devices()
    for stage, count in zip(plan.stages, plan.layer_partition, strict=True):
        assert {layer_device[1 + b] for b in range(start, start + count)} == {stage.device}
        start += count


@pytest.mark.parametrize(
    ("devices", "stages", "message"),
    [
        ([("m:metal:0", "m")], [("m:metal:0", 0, 5)], "metal device; vLLM pipelines run on"),
        (
            [("a:cpu:0", "a"), ("a:cuda:0", "a")],
            [("a:cpu:0", 0, 2), ("a:cuda:0", 3, 5)],
            "stage on a:cpu:0 is a cpu device",
        ),
        (
            [("a:cuda:0", "a"), ("b:hip:0", "b")],
            [("a:cuda:0", 0, 2), ("b:hip:0", 3, 5)],
            "mixes CUDA and ROCm",
        ),
        (
            GPUS,
            [("a:cuda:0", 0, 0), ("b:cuda:0", 1, 5)],
            "stage 0 on a:cuda:0 holds only the embedding",
        ),
        (GPUS, [("a:cuda:0", 0, 4), ("b:cuda:0", 5, 5)], "holds only the output head"),
    ],
)
def test_vllm_refuses_what_its_pipeline_cannot_run(
    devices: list[tuple[str, str]], stages: list[tuple[str, int, int]], message: str
) -> None:
    with pytest.raises(PlanNotExpressible, match=message):
        emit_vllm(placement_of(stages), problem_of(devices, 4))


NODES = [
    ("mac:cpu:0", "mac"), ("mac:metal:0", "mac"),
    ("pc:cpu:0", "pc"), ("pc:cuda:0", "pc"),
    ("pi:cpu:0", "pi"),
]  # fmt: skip
HOSTS = {"mac": "10.0.0.1", "pc": "10.0.0.2", "pi": "10.0.0.3"}


def prima_places(
    n_layer: int, windows: Sequence[int], gpu_layers: Sequence[int]
) -> list[tuple[int, bool]]:
    """prima.cpp's rule (this_layer_is_mine, map_layer_to_local_id and
    llm_load_tensors), done again here: (rank, on its GPU) of every block."""
    world = len(windows)
    w = [*windows, *[0] * (32 - world)]
    cycle = sum(windows)
    out = []
    for layer in range(n_layer):
        cumulative, rank = 0, 1
        while True:
            cumulative += w[rank]
            if layer < cumulative:
                break
            rank = (rank + 1) % world
        offset = layer % cycle
        before = 0
        for r in range(1, world):
            if r == rank:
                break
            before += w[r]
        else:
            before = sum(w[1:world])  # rank 0's window closes the cycle
        local = offset - before + (layer // cycle) * w[rank]
        window = w[rank]
        out.append((rank, local % window >= window - gpu_layers[rank]))
    return out


def read_prima(plan: PrimaPlan) -> tuple[list[int], list[int], dict[int, tuple[str, str, str]]]:
    """-lw, each rank's -ngl and (node, --master, --next), from the commands alone."""
    ranks: dict[int, tuple[str, str, str]] = {}
    gpu: dict[int, int] = {}
    windows: list[int] = []
    for c in plan.commands:
        rank = int(flag(c.argv, "--rank") or 0)
        assert c.node is not None
        ranks[rank] = (c.node, flag(c.argv, "--master") or "", flag(c.argv, "--next") or "")
        gpu[rank] = int(flag(c.argv, "-ngl") or 0)
        if "-lw" in c.argv:
            windows = [int(x) for x in (flag(c.argv, "-lw") or "").split(",")]
    return windows, [gpu[r] for r in range(len(ranks))], ranks


def check_prima(plan: PrimaPlan, placement: Placement, n_blocks: int) -> None:
    layer_device = placement.layer_devices()[1:-1]  # the blocks' devices
    windows, gpu_layers, ranks = read_prima(plan)
    if len(ranks) == 1:
        windows = [n_blocks]
    assert sum(windows) == n_blocks
    node_of = dict(NODES)
    for block, (rank, on_gpu) in enumerate(prima_places(n_blocks, windows, gpu_layers)):
        device = layer_device[block]
        assert ranks[rank][0] == node_of[device]
        assert on_gpu == (device.split(":")[1] != "cpu")
    # the ring: every rank knows rank 0 and passes to the next
    if len(ranks) > 1:
        for r, (_, master, nxt) in ranks.items():
            assert master == HOSTS[ranks[0][0]]
            assert nxt == HOSTS[ranks[(r + 1) % len(ranks)][0]]


def test_prima_windows_put_rank_zero_last() -> None:
    problem = problem_of(NODES, 40)  # 42 layers
    placement = placement_of(
        [("pc:cpu:0", 0, 5), ("pc:cuda:0", 6, 25), ("pi:cpu:0", 26, 30),
         ("mac:cpu:0", 31, 33), ("mac:metal:0", 34, 41)]
    )  # fmt: skip
    plan = emit_prima_cpp(placement, problem, HOSTS, model_path="qwq.gguf")
    # pc holds blocks 0..24, pi 25..29, mac 30..39 and the head: mac is rank 0
    assert plan.layer_window == (10, 25, 5)
    assert [(r.rank, r.node, r.gpu_layers) for r in plan.ranks] == [
        (0, "mac", 7),
        (1, "pc", 20),
        (2, "pi", 0),
    ]
    head = plan.ranks[0].command.argv
    assert head == (
        "llama-cli", "-m", "qwq.gguf", "--world", "3", "--rank", "0",
        "--master", "10.0.0.1", "--next", "10.0.0.2", "-lw", "10,25,5", "-ngl", "7",
    )  # fmt: skip
    assert any("output layer on mac's CPU" in n for n in plan.notes)
    check_prima(plan, placement, 40)
    assert [c.node for c in plan.commands][-1] == "mac"  # the head starts last


@st.composite
def prima_plans(draw: st.DrawFn) -> tuple[Placement, int]:
    """Plans whose nodes each come once, a node's CPU stage before its GPU's."""
    n_blocks = draw(st.integers(3, 120))
    devices: list[str] = []
    for node in draw(st.permutations(["mac", "pc", "pi"]))[: draw(st.integers(1, 3))]:
        gpu = {"mac": "mac:metal:0", "pc": "pc:cuda:0"}.get(node)
        shapes = [[f"{node}:cpu:0"]] + ([[gpu], [f"{node}:cpu:0", gpu]] if gpu else [])
        devices += draw(st.sampled_from(shapes))
    n = n_blocks + 2
    cuts = sorted(
        draw(
            st.lists(
                st.integers(1, n - 1),
                min_size=len(devices) - 1,
                max_size=len(devices) - 1,
                unique=True,
            )
        )
    )
    bounds = [0, *cuts, n]
    return placement_of(
        [(d, bounds[i], bounds[i + 1] - 1) for i, d in enumerate(devices)]
    ), n_blocks


@settings(max_examples=200, deadline=None)
@given(prima_plans())
def test_prima_puts_every_block_where_the_plan_does(case: tuple[Placement, int]) -> None:
    placement, n_blocks = case
    problem = problem_of(NODES, n_blocks)
    try:
        plan = emit_prima_cpp(placement, problem, HOSTS)
    except PlanNotExpressible as e:
        # only a node left without a block of its own (its stage holds the embedding or head)
        assert "holds no transformer block" in str(e)
        return
    check_prima(plan, placement, n_blocks)


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        (
            [("pc:cuda:0", 0, 10), ("mac:metal:0", 11, 20), ("pc:cpu:0", 21, 41)],
            "node pc runs stages that are not adjacent",
        ),
        ([("pc:cuda:0", 0, 10), ("pc:cpu:0", 11, 41)], "blocks on the CPU after the GPU"),
        ([("a:cuda:0", 0, 10), ("a:cuda:1", 11, 41)], "runs stages on 2 GPUs"),
        ([("v:vulkan:0", 0, 41)], "v:vulkan:0 is a vulkan device"),
        ([("pi:cpu:0", 0, 0), ("pc:cuda:0", 1, 41)], "node pi holds no transformer block"),
    ],
)
def test_prima_refuses_what_its_flags_cannot_say(
    stages: list[tuple[str, int, int]], message: str
) -> None:
    devices = [*NODES, ("a:cuda:0", "a"), ("a:cuda:1", "a"), ("v:vulkan:0", "v")]
    hosts = {**HOSTS, "a": "10.0.0.4", "v": "10.0.0.5"}
    with pytest.raises(PlanNotExpressible, match=message):
        emit_prima_cpp(placement_of(stages), problem_of(devices, 40), hosts)


def test_prima_on_one_node_needs_no_ring() -> None:
    problem = problem_of(NODES, 40)
    plan = emit_prima_cpp(placement_of([("pc:cpu:0", 0, 10), ("pc:cuda:0", 11, 41)]), problem)
    assert plan.world == 1
    assert plan.ranks[0].command.argv == (
        "llama-cli",
        "-m",
        "MODEL.gguf",
        "-ngl",
        "30",
        "--keep-out-in-cuda",
    )
