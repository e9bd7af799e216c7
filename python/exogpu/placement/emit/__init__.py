"""Plans that run: a placement written as the flags of the engine that runs it.

One function per engine, each returning a typed object with the argv of
every command, the values behind them, ``render()`` (what a user pastes) and
``to_json()``:

    >>> from exogpu.placement import solve
    >>> from exogpu.placement.emit import emit_llama_cpp
    >>> plan = emit_llama_cpp(solve(problem, "latency"), problem,
    ...                       {"pc": "192.168.1.10", "mac": "192.168.1.11:50053"})
    >>> plan.server_argv()   # llama-server -m MODEL.gguf --rpc ... --tensor-split ... -ngl ...

A plan that an engine's flags cannot express raises PlanNotExpressible (an
exogpu.InvalidArgument) saying why. docs/engines.md describes each engine's
rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exogpu import InvalidArgument
from exogpu.placement.emit._plan import (
    Command,
    Layout,
    NodeAddressMissing,
    PlanNotExpressible,
)
from exogpu.placement.emit.llama_cpp import DEFAULT_RPC_PORT, LlamaCppPlan, emit_llama_cpp
from exogpu.placement.emit.prima_cpp import PrimaPlan, emit_prima_cpp
from exogpu.placement.emit.vllm import VllmPlan, emit_vllm
from exogpu.placement.problem import Problem
from exogpu.placement.result import Placement

ENGINES = ("llama.cpp", "vllm", "prima.cpp")

EnginePlan = LlamaCppPlan | VllmPlan | PrimaPlan


def emit(
    engine: str,
    placement: Placement | Mapping[str, Any],
    problem: Problem,
    addresses: Mapping[str, str] | None = None,
    *,
    client: str | None = None,
    rpc_port: int = DEFAULT_RPC_PORT,
    model: str | None = None,
) -> EnginePlan:
    """`placement` for `engine` (one of ENGINES). `model` is the model file
    (llama.cpp, prima.cpp) or name (vLLM) the commands load; `addresses`,
    `client` and `rpc_port` are those of the engines that connect nodes."""
    if engine in ENGINES and engine != "llama.cpp" and client is not None:
        raise InvalidArgument(f"a client node is llama.cpp's; {engine} has none")
    if engine == "llama.cpp":
        return emit_llama_cpp(
            placement,
            problem,
            addresses,
            client=client,
            rpc_port=rpc_port,
            model_path=model or "MODEL.gguf",
        )
    if engine == "vllm":
        return emit_vllm(placement, problem, model=model or "MODEL")
    if engine == "prima.cpp":
        return emit_prima_cpp(placement, problem, addresses, model_path=model or "MODEL.gguf")
    raise InvalidArgument(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")


__all__ = [
    "DEFAULT_RPC_PORT",
    "ENGINES",
    "Command",
    "EnginePlan",
    "Layout",
    "LlamaCppPlan",
    "NodeAddressMissing",
    "PlanNotExpressible",
    "PrimaPlan",
    "VllmPlan",
    "emit",
    "emit_llama_cpp",
    "emit_prima_cpp",
    "emit_vllm",
]
