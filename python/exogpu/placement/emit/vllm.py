"""vLLM pipeline parallelism: one pipeline rank per stage.

vLLM splits the decoder blocks over ``pipeline_parallel_size`` ranks; the
environment variable ``VLLM_PP_LAYER_PARTITION`` ("a,b,c", one count per
rank, summing to the config's ``num_hidden_layers``) overrides its even split
(``vllm.distributed.utils.get_pp_indices``). The counts are transformer
blocks only: the first rank also holds the token embedding, the last the
final norm and the LM head, whatever the partition says. Each stage of a plan
is one device, so ``tensor_parallel_size`` is 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from exogpu.placement.emit._plan import (
    Command,
    Layout,
    PlanNotExpressible,
    plan_parts,
    render_commands,
)
from exogpu.placement.problem import Problem
from exogpu.placement.result import Placement

ENGINE = "vllm"
# The accelerator platforms vLLM runs a pipeline on, by exogpu backend kind.
PLATFORMS = {"cuda": "CUDA", "hip": "ROCm"}


@dataclass(frozen=True)
class VllmStage:
    rank: int
    device: str
    node: str
    blocks: int


@dataclass(frozen=True)
class VllmPlan:
    pipeline_parallel_size: int
    layer_partition: tuple[int, ...]  # transformer blocks per rank
    stages: tuple[VllmStage, ...]
    model: str
    tensor_parallel_size: int = 1
    notes: tuple[str, ...] = field(default=())

    engine = ENGINE

    @property
    def env(self) -> dict[str, str]:
        return {"VLLM_PP_LAYER_PARTITION": ",".join(map(str, self.layer_partition))}

    @property
    def argv(self) -> list[str]:
        argv = ["vllm", "serve", self.model]
        argv += ["--pipeline-parallel-size", str(self.pipeline_parallel_size)]
        argv += ["--tensor-parallel-size", str(self.tensor_parallel_size)]
        if len({s.node for s in self.stages}) > 1:
            argv += ["--distributed-executor-backend", "ray"]
        return argv

    @property
    def commands(self) -> tuple[Command, ...]:
        return (Command(self.stages[0].node, tuple(self.argv), tuple(self.env.items())),)

    def render(self) -> str:
        return render_commands(self.commands, self.notes)

    def to_json(self) -> dict[str, Any]:
        return {
            "engine": ENGINE,
            "pipeline_parallel_size": self.pipeline_parallel_size,
            "tensor_parallel_size": self.tensor_parallel_size,
            "layer_partition": list(self.layer_partition),
            "env": self.env,
            "stages": [
                {"rank": s.rank, "device": s.device, "node": s.node, "blocks": s.blocks}
                for s in self.stages
            ],
            "argv": self.argv,
            "commands": [c.to_json() for c in self.commands],
            "notes": list(self.notes),
        }


def emit_vllm(
    placement: Placement | Mapping[str, Any],
    problem: Problem,
    *,
    model: str = "MODEL",
    layout: Layout | None = None,
) -> VllmPlan:
    """The pipeline size and layer partition that run `placement` in vLLM.

    Raises PlanNotExpressible when a stage is on a device vLLM cannot drive
    in one pipeline (a CPU, Metal, Vulkan; CUDA mixed with ROCm) or holds no
    transformer block (vLLM gives every rank whole blocks, with the embedding
    and the head riding on the first and last).
    """
    layout = layout or Layout.of(problem)
    parts = plan_parts(ENGINE, placement, problem, layout)
    platforms = set()
    for p in parts:
        platform = PLATFORMS.get(p.kind)
        if platform is None:
            raise PlanNotExpressible(
                ENGINE,
                f"stage on {p.device} is a {p.kind} device; vLLM pipelines run on "
                f"{' or '.join(PLATFORMS.values())} GPUs",
            )
        platforms.add(platform)
    if len(platforms) > 1:
        raise PlanNotExpressible(
            ENGINE, "it mixes CUDA and ROCm devices; one vLLM pipeline runs on one platform"
        )
    for i, p in enumerate(parts):
        if p.blocks == 0:
            held = "the embedding" if p.embedding else "the output head"
            raise PlanNotExpressible(
                ENGINE,
                f"stage {i} on {p.device} holds only {held}; vLLM gives every pipeline rank "
                "at least one transformer block (the embedding rides on the first, the head "
                "on the last)",
            )
    notes = [
        "vLLM assigns pipeline ranks to GPUs itself: make rank i's GPU the plan's stage i "
        "(start the Ray head on the first stage's node; order GPUs with CUDA_VISIBLE_DEVICES)"
    ]
    if not (layout.embedding and layout.output):
        notes.append(
            "the plan does not name the embedding and the head: vLLM puts them with the "
            "first and the last rank"
        )
    return VllmPlan(
        pipeline_parallel_size=len(parts),
        layer_partition=tuple(p.blocks for p in parts),
        stages=tuple(VllmStage(i, p.device, p.node, p.blocks) for i, p in enumerate(parts)),
        model=model,
        notes=tuple(notes),
    )
