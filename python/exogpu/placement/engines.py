"""Engine profiles: the problem an inference engine really runs.

The contract (docs/placement.md) prices a pipeline whose stages hand their
activations straight to the next. An engine may move data its own way; its
profile rewrites a problem into the one that engine runs, with the
contract's generic terms only, so that the search, ``evaluate()`` and every
objective apply to it unchanged.

- ``direct``: the contract as written.
- ``llama.cpp-rpc``: llama.cpp's RPC client sits at the centre of a star
  (measured on real llama.cpp by benchmarks/llama_rpc_report.py):

  * the client keeps the token embedding: the first layer leaves the placed
    layers and its activation becomes ``endpoints.input_bytes``, sent to the
    first stage (the entry hop);
  * the client reads the logits back from the last stage every token: the
    output layer's activation (vocab x 4 bytes) is ``endpoints.output_bytes``
    (the exit hop);
  * every hop between two servers passes through the client: server ``a``
    to server ``b`` is a link of latency ``lat(a, c) + lat(c, b)`` and
    bandwidth ``1 / (1 / bw(a, c) + 1 / bw(c, b))`` over the endpoint links;
  * so each device used costs one round trip to the client per token: half
    of it in the hop to its stage, half in the hop after.

  The problem names the client in ``endpoints`` (its node and, per device,
  the measured link to it); the profile fills in the rest.
"""

from __future__ import annotations

from dataclasses import replace

from exogpu import InvalidArgument
from exogpu.placement.problem import LinkSpec, Problem

ENGINES = ("direct", "llama.cpp-rpc")


def apply_engine(problem: Problem, engine: str) -> Problem:
    """`problem` as `engine` runs it (one of ENGINES)."""
    if engine == "direct":
        return problem
    if engine == "llama.cpp-rpc":
        return llama_cpp_rpc(problem)
    raise InvalidArgument(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")


def llama_cpp_rpc(problem: Problem) -> Problem:
    """The problem llama.cpp runs over RPC, its client being `problem.endpoints`.

    The first layer must be the token embedding (no KV cache), as
    exogpu.models lists it; the last is the output layer. Raises
    InvalidArgument when the problem has no endpoints or no such layers.
    """
    if problem.endpoints is None:
        raise InvalidArgument(
            "engine llama.cpp-rpc needs the problem's endpoints: the node that runs "
            "llama.cpp's client and its links to the devices"
        )
    if len(problem.layers) < 2:
        raise InvalidArgument(
            "engine llama.cpp-rpc needs the token embedding and at least one more layer"
        )
    embedding = problem.layers[0]
    if embedding.kv_bytes_per_token:
        raise InvalidArgument(
            "engine llama.cpp-rpc: layers[0] must be the token embedding, which llama.cpp "
            f"keeps on its client; {embedding.name!r} has a KV cache"
        )
    ids = [d.id for d in problem.devices]
    star = []
    for i, a in enumerate(ids):
        to_a = problem.endpoint_link(a)
        for b in ids[i + 1 :]:
            to_b = problem.endpoint_link(b)
            star.append(
                LinkSpec(
                    a,
                    b,
                    bandwidth=1.0 / (1.0 / to_a.bandwidth + 1.0 / to_b.bandwidth),
                    latency=to_a.latency + to_b.latency,
                )
            )
    endpoints = replace(
        problem.endpoints,
        input_bytes=embedding.activation_bytes,
        output_bytes=problem.layers[-1].activation_bytes,
    )
    return replace(problem, layers=problem.layers[1:], links=tuple(star), endpoints=endpoints)


__all__ = ["ENGINES", "apply_engine", "llama_cpp_rpc"]
