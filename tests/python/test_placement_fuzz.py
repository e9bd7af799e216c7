"""Fuzzing the contract's JSON input: any input either solves or is rejected
with a clear InvalidArgument (a ValueError); nothing else escapes."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import exogpu
from exogpu.placement import solve

VALID: dict[str, Any] = {
    "version": 2,
    "layers": [
        {
            "name": "embed",
            "weight_bytes": 1000,
            "kv_bytes_per_token": 0,
            "flops_per_token": 0.0,
            "activation_bytes": 8,
        },
        {
            "name": "block",
            "weight_bytes": 4000,
            "kv_bytes_per_token": 2,
            "flops_per_token": 8000.0,
            "activation_bytes": 8,
        },
        {
            "name": "head",
            "weight_bytes": 1000,
            "kv_bytes_per_token": 0,
            "flops_per_token": 2000.0,
            "activation_bytes": 16,
        },
    ],
    "devices": [
        {
            "id": "a",
            "node": "n1",
            "memory_bytes": 6000,
            "flops": 1e6,
            "memory_bandwidth": 1e6,
            "memory_pool": "n1:ram",
            "stage_overhead": 1e-4,
            "disk_read_bandwidth": 1e5,
        },
        {"id": "b", "node": "n2", "memory_bytes": 9000, "flops": 2e6, "memory_bandwidth": 5e5},
        {
            "id": "c",
            "node": "n1",
            "memory_bytes": 3000,
            "flops": 3e6,
            "memory_bandwidth": 2e6,
            "memory_pool": "n1:ram",
        },
    ],
    "memory_pools": {"n1:ram": 8000},
    "links": [{"a": "a", "b": "b", "bandwidth": 1e5, "latency": 1e-4}],
    "default_link": {"bandwidth": 1e5, "latency": 5e-4},
    "intra_node_link": {"bandwidth": 1e7, "latency": 1e-5},
    "endpoints": {
        "node": "client",
        "input_bytes": 64,
        "output_bytes": 128,
        "links": [{"device": "b", "bandwidth": 1e6, "latency": 1e-4}],
    },
    "workload": {"batch": 1, "context_tokens": 16},
    "constraints": {
        "memory_headroom": 0.1,
        "fixed_order": False,
        "ring": False,
        "allow_disk_offload": True,
    },
}

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, (*prefix, i))
    return out


ALL_PATHS = paths(VALID)[1:]


def run(problem: Any) -> None:
    try:
        out = solve(problem, "throughput", time_budget=0.2)
    except exogpu.InvalidArgument as e:
        assert str(e)  # a message, naming what was wrong
        return
    json.dumps(out.to_json(), allow_nan=False)  # output is valid JSON


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), junk, st.booleans()), min_size=1, max_size=3))
def test_mutated_problems_fail_cleanly(edits: list[tuple[tuple[Any, ...], Any, bool]]) -> None:
    problem = copy.deepcopy(VALID)
    for path, value, delete in edits:
        target: Any = problem
        try:
            for key in path[:-1]:
                target = target[key]
            if delete:
                del target[path[-1]]
            else:
                target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    run(problem)


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        junk,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(["layers", "devices", "links", "default_link", "workload", "x"]),
                inner,
                max_size=4,
            )
        ),
    )
)
def test_arbitrary_json_fails_cleanly(value: Any) -> None:
    if isinstance(value, str):
        value = {"layers": value}  # a bare string would be read as a path
    run(value)


def test_error_names_the_field() -> None:
    bad = copy.deepcopy(VALID)
    bad["devices"][1]["flops"] = -1
    try:
        solve(bad)
    except exogpu.InvalidArgument as e:
        assert str(e) == "devices[1].flops must be positive and finite, got -1"
    else:
        raise AssertionError("accepted a negative flops")
    bad = copy.deepcopy(VALID)
    bad["layers"][2]["weight_bytes"] = 1.5
    try:
        solve(bad)
    except exogpu.InvalidArgument as e:
        assert "layers[2].weight_bytes must be an integer" in str(e)
    else:
        raise AssertionError("accepted fractional bytes")
