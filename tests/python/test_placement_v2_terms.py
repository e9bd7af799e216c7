"""Contract version 2's terms (docs/placement.md): shared memory pools, disk
offload, per-stage overheads and endpoints. The native search's optimum is
the brute force's (tests/python/placement_oracle.py) on random small
problems that use them, every reported figure is recomputed from the
contract, and every bad field is a typed error that names it."""

from __future__ import annotations

import copy
import math
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import exogpu
from exogpu.placement import Placement, PlacementInfeasible, Problem, evaluate, solve
from placement_oracle import all_placements, price, value
from test_placement_oracle import check_reported_figures, close

OBJECTIVES = ("latency", "throughput", "memory")


@st.composite
def v2_problems(draw: st.DrawFn) -> dict[str, Any]:
    """Small problems whose devices share pools, pay overheads, may offload
    to disk and serve endpoints; figures are whole numbers so that failures
    shrink to readable problems."""
    n_devices = draw(st.integers(1, 4))
    n_layers = draw(st.integers(1, 6))
    n_pools = draw(st.integers(0, 2))
    devices: list[dict[str, Any]] = []
    for i in range(n_devices):
        if devices and draw(st.integers(0, 4)) == 0:  # a twin, to exercise collapsing
            devices.append({**devices[-1], "id": f"d{i}"})
            continue
        d: dict[str, Any] = {
            "id": f"d{i}",
            "node": draw(st.sampled_from(["n0", "n1", "n2"])),
            "memory_bytes": draw(st.integers(300, 4000)),
            "flops": float(draw(st.integers(100, 1000))),
            "memory_bandwidth": float(draw(st.integers(200, 3000))),
        }
        if n_pools and draw(st.integers(0, 2)) > 0:
            d["memory_pool"] = f"p{draw(st.integers(0, n_pools - 1))}"
        if draw(st.booleans()):
            d["stage_overhead"] = draw(st.integers(0, 20)) / 10
        if draw(st.booleans()):
            d["disk_read_bandwidth"] = float(draw(st.integers(50, 1000)))
        devices.append(d)
    named = sorted({d["memory_pool"] for d in devices if "memory_pool" in d})
    pools = {name: draw(st.integers(300, 6000)) for name in named if draw(st.booleans())}
    layers = [
        {
            "name": f"l{i}",
            "weight_bytes": draw(st.integers(50, 1200)),
            "kv_bytes_per_token": draw(st.integers(0, 3)),
            "flops_per_token": float(draw(st.integers(0, 2000))),
            "activation_bytes": draw(st.integers(1, 100)),
        }
        for i in range(n_layers)
    ]
    problem: dict[str, Any] = {
        "version": 2,
        "layers": layers,
        "devices": devices,
        "memory_pools": pools,
        "default_link": {"bandwidth": 50.0, "latency": 0.25},
        "intra_node_link": {"bandwidth": 1000.0, "latency": 0.01},
        "workload": {"batch": draw(st.integers(1, 3)), "context_tokens": draw(st.integers(0, 40))},
        "constraints": {
            "memory_headroom": draw(st.sampled_from([0.0, 0.1, 0.25])),
            "fixed_order": draw(st.integers(0, 3)) == 0,
            "ring": False,
            "allow_disk_offload": draw(st.booleans()),
        },
    }
    if draw(st.booleans()):
        ids = [d["id"] for d in devices]
        linked = draw(st.lists(st.sampled_from(ids), unique=True, max_size=len(ids)))
        problem["endpoints"] = {
            "node": draw(st.sampled_from(["client", "n0"])),
            "input_bytes": draw(st.integers(0, 200)),
            "output_bytes": draw(st.integers(0, 400)),
            "links": [
                {
                    "device": x,
                    "bandwidth": float(draw(st.integers(20, 500))),
                    "latency": draw(st.integers(0, 30)) / 100,
                }
                for x in linked
            ],
        }
    else:
        problem["constraints"]["ring"] = draw(st.integers(0, 3)) == 0
    return problem


def check_optimal(problem: dict[str, Any]) -> None:
    candidates = all_placements(problem)
    for objective in OBJECTIVES:
        if not candidates:
            with pytest.raises(PlacementInfeasible):
                solve(problem, objective)
            continue
        out = solve(problem, objective).to_json()
        assert out["optimal"] is True
        best = min(value(c, objective) for c in candidates)
        assert close(out["value"], best), (problem, objective, out["value"], best)
        check_reported_figures(problem, out, objective)
        c = price(
            problem,
            tuple(s["device"] for s in out["stages"]),
            tuple(s["first_layer"] for s in out["stages"][1:]),
        )
        for stage, offloaded in zip(out["stages"], c.offloaded, strict=True):
            assert stage.get("offloaded_bytes", 0) == offloaded
        optima = [c for c in candidates if close(value(c, objective), best)]
        n_stages = len(out["stages"])
        if objective == "memory":
            assert out["latency"] <= min(c.latency for c in optima) * (1 + 1e-9) + 1e-15
        else:
            assert n_stages == min(len(c.devices) for c in optima)
            same = [c for c in optima if len(c.devices) == n_stages]
            assert out["latency"] <= min(c.latency for c in same) * (1 + 1e-9) + 1e-15


def _layer(weight: int, kv: int, flops: float) -> dict[str, Any]:
    return {
        "name": "l",
        "weight_bytes": weight,
        "kv_bytes_per_token": kv,
        "flops_per_token": flops,
        "activation_bytes": 1,
    }


def _device(i: int, memory: int, flops: float, bandwidth: float, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"d{i}",
        "node": "n0",
        "memory_bytes": memory,
        "flops": flops,
        "memory_bandwidth": bandwidth,
        **extra,
    }


# Two stages equally slow in truth whose prefix-sum times differ in the last
# bit: the tie-breaks must still see the tie (fewer stages, then latency).
ROUNDING_TIES = [
    {
        "version": 2,
        "layers": [_layer(91, 0, 0.0), _layer(50, 0, 249.0), _layer(50, 0, 249.0)],
        "devices": [
            _device(0, 300, 100.0, 205.0),
            _device(1, 300, 100.0, 205.0),
            _device(2, 300, 110.0, 202.0),
        ],
        "default_link": {"bandwidth": 50.0, "latency": 0.25},
        "intra_node_link": {"bandwidth": 1000.0, "latency": 0.01},
        "workload": {"batch": 2, "context_tokens": 0},
        "constraints": {"ring": True},
    },
    {
        "version": 2,
        "layers": [_layer(50, 0, 0.0), _layer(50, 0, 251.0), _layer(295, 1, 251.0)],
        "devices": [
            _device(0, 300, 186.0, 200.0, disk_read_bandwidth=50.0),
            _device(1, 300, 100.0, 200.0),
            _device(2, 301, 184.0, 375.0),
            _device(3, 301, 184.0, 375.0),
        ],
        "default_link": {"bandwidth": 50.0, "latency": 0.25},
        "intra_node_link": {"bandwidth": 1000.0, "latency": 0.01},
        "workload": {"batch": 2, "context_tokens": 3},
        "constraints": {"ring": True, "allow_disk_offload": True},
    },
]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(v2_problems())
@example(ROUNDING_TIES[0])
@example(ROUNDING_TIES[1])
def test_optimum_matches_brute_force(problem: dict[str, Any]) -> None:
    check_optimal(problem)


def pooled_problem(rng: random.Random) -> dict[str, Any]:
    """Two or more devices in one tight pool, offload now and then, endpoints
    always: problems in which the terms decide the answer."""
    devices = []
    for i in range(rng.randint(2, 4)):
        d: dict[str, Any] = {
            "id": f"d{i}",
            "node": rng.choice(["n0", "n1"]),
            "memory_bytes": rng.randint(300, 3000),
            "flops": float(rng.randint(100, 1000)),
            "memory_bandwidth": float(rng.randint(200, 3000)),
        }
        if i < 2 or rng.random() < 0.3:
            d["memory_pool"] = "ram"
        if rng.random() < 0.5:
            d["stage_overhead"] = rng.randint(0, 20) / 10
        if rng.random() < 0.6:
            d["disk_read_bandwidth"] = float(rng.randint(50, 1000))
        devices.append(d)
    layers = [
        {
            "name": f"l{i}",
            "weight_bytes": rng.randint(50, 1200),
            "kv_bytes_per_token": rng.randint(0, 3),
            "flops_per_token": float(rng.randint(0, 2000)),
            "activation_bytes": rng.randint(1, 100),
        }
        for i in range(rng.randint(2, 6))
    ]
    return {
        "version": 2,
        "layers": layers,
        "devices": devices,
        "memory_pools": {"ram": rng.randint(400, 3000)},
        "default_link": {"bandwidth": 50.0, "latency": 0.25},
        "intra_node_link": {"bandwidth": 1000.0, "latency": 0.01},
        "endpoints": {
            "node": "client",
            "input_bytes": rng.randint(0, 200),
            "output_bytes": rng.randint(0, 400),
        },
        "workload": {"batch": rng.randint(1, 3), "context_tokens": rng.randint(0, 40)},
        "constraints": {"memory_headroom": 0.0, "allow_disk_offload": rng.random() < 0.5},
    }


def test_the_terms_change_the_optimum() -> None:
    """On seeded problems the pool binds (the optimum without it is better or
    does not fit it), stages offload and the endpoints' hops are reported;
    every optimum is the brute force's."""
    rng = random.Random(2024)
    binding = offloading = 0
    for _ in range(60):
        problem = pooled_problem(rng)
        check_optimal(problem)
        free = copy.deepcopy(problem)
        for d in free["devices"]:
            d.pop("memory_pool", None)
        free.pop("memory_pools")
        if not all_placements(problem) or not all_placements(free):
            continue
        pooled = solve(problem, "throughput")
        apart = solve(free, "throughput")
        if apart.value < pooled.value * (1 - 1e-9):
            binding += 1
            assert not evaluate(problem, _stages(apart), "throughput").feasible
        if any(s.offloaded_bytes for s in pooled.stages):
            offloading += 1
        kinds = [h.kind for h in pooled.hops]
        assert kinds[0] == "entry" and kinds[-1] == "exit"
        assert pooled.hops[0].source == "client" and pooled.hops[0].after_layer == -1
        assert pooled.hops[-1].target == "client"
        assert pooled.hops[-1].after_layer == len(problem["layers"]) - 1
    assert binding >= 5 and offloading >= 3, (binding, offloading)


def _stages(p: Placement) -> list[tuple[str, int, int]]:
    return [(s.device, s.first_layer, s.last_layer) for s in p.stages]


VALID: dict[str, Any] = {
    "version": 2,
    "layers": [
        {"name": "a", "weight_bytes": 300, "flops_per_token": 10.0, "activation_bytes": 8},
        {"name": "b", "weight_bytes": 300, "flops_per_token": 10.0, "activation_bytes": 8},
    ],
    "devices": [
        {
            "id": "cpu",
            "node": "mac",
            "memory_bytes": 500,
            "flops": 100.0,
            "memory_bandwidth": 1000.0,
            "memory_pool": "ram",
            "stage_overhead": 0.01,
            "disk_read_bandwidth": 100.0,
        },
        {
            "id": "gpu",
            "node": "mac",
            "memory_bytes": 400,
            "flops": 1000.0,
            "memory_bandwidth": 4000.0,
            "memory_pool": "ram",
        },
    ],
    "memory_pools": {"ram": 700},
    "default_link": {"bandwidth": 100.0, "latency": 0.01},
    "endpoints": {
        "node": "client",
        "input_bytes": 16,
        "output_bytes": 64,
        "links": [{"device": "gpu", "bandwidth": 100.0, "latency": 0.002}],
    },
    "constraints": {"allow_disk_offload": True},
}


def edited(path: tuple[Any, ...], new: Any) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    node = data
    for key in path[:-1]:
        node = node[key]
    if new is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = new
    return data


DELETE = object()


def test_the_valid_problem_solves() -> None:
    out = solve(VALID, "latency")
    assert out.optimal
    assert out.hops[0].kind == "entry"


@pytest.mark.parametrize(
    ("path", "bad", "field"),
    [
        (("devices", 0, "memory_pool"), "", "devices[0].memory_pool"),
        (("devices", 0, "memory_pool"), 3, "devices[0].memory_pool"),
        (("memory_pools",), [], "memory_pools"),
        (("memory_pools", "ram"), 0, "memory_pools.ram"),
        (("memory_pools", "ram"), -5, "memory_pools.ram"),
        (("memory_pools", "ram"), 1.5, "memory_pools.ram"),
        (("memory_pools", "ram"), 2**53, "memory_pools.ram"),
        (("memory_pools", "ram"), "700", "memory_pools.ram"),
        (("memory_pools", "vram"), 100, "memory_pools.vram"),
        (("devices", 0, "stage_overhead"), -1, "devices[0].stage_overhead"),
        (("devices", 0, "stage_overhead"), math.inf, "devices[0].stage_overhead"),
        (("devices", 0, "stage_overhead"), "0.1", "devices[0].stage_overhead"),
        (("devices", 1, "disk_read_bandwidth"), 0, "devices[1].disk_read_bandwidth"),
        (("devices", 1, "disk_read_bandwidth"), math.nan, "devices[1].disk_read_bandwidth"),
        (("constraints", "allow_disk_offload"), "yes", "constraints.allow_disk_offload"),
        (("endpoints",), [], "endpoints"),
        (("endpoints", "node"), "", "endpoints.node"),
        (("endpoints", "node"), DELETE, "endpoints.node"),
        (("endpoints", "input_bytes"), -1, "endpoints.input_bytes"),
        (("endpoints", "output_bytes"), 1.5, "endpoints.output_bytes"),
        (("endpoints", "output_bytes"), 2**60, "endpoints.output_bytes"),
        (("endpoints", "links"), {}, "endpoints.links"),
        (("endpoints", "links", 0, "device"), "tpu", "endpoints.links[0].device"),
        (("endpoints", "links", 0, "bandwidth"), 0, "endpoints.links[0].bandwidth"),
        (("endpoints", "links", 0, "latency"), -1, "endpoints.links[0].latency"),
        (("endpoints", "links", 0, "jitter"), 1, "endpoints.links[0]"),
        (("endpoints", "port"), 1, "endpoints"),
        (("constraints", "ring"), True, "ring"),
    ],
)
def test_bad_field_is_a_typed_error_naming_it(path: tuple[Any, ...], bad: Any, field: str) -> None:
    with pytest.raises(exogpu.InvalidArgument) as info:
        Problem.from_json(edited(path, bad))
    assert field in str(info.value)


def test_an_endpoint_link_listed_twice_is_refused() -> None:
    data = copy.deepcopy(VALID)
    data["endpoints"]["links"].append(dict(data["endpoints"]["links"][0]))
    with pytest.raises(exogpu.InvalidArgument, match=r"endpoints\.links\[1\] repeats"):
        Problem.from_json(data)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (("devices", 0, "memory_pool"), "memory_pool"),
        (("devices", 0, "stage_overhead"), "stage_overhead"),
        (("devices", 0, "disk_read_bandwidth"), "disk_read_bandwidth"),
        (("memory_pools",), "memory_pools"),
        (("endpoints",), "endpoints"),
        (("constraints", "allow_disk_offload"), "allow_disk_offload"),
    ],
)
def test_version_1_files_may_not_use_them(path: tuple[Any, ...], field: str) -> None:
    data: dict[str, Any] = {
        "layers": VALID["layers"],
        "devices": [
            {
                k: v
                for k, v in d.items()
                if k in ("id", "node", "memory_bytes", "flops", "memory_bandwidth")
            }
            for d in VALID["devices"]
        ],
        "default_link": VALID["default_link"],
        "constraints": {},
    }
    node: Any = data
    source: Any = VALID
    for key in path[:-1]:
        node, source = node[key], source[key]
    node[path[-1]] = copy.deepcopy(source[path[-1]])
    if field == "memory_pools":
        data["devices"][0]["memory_pool"] = "ram"  # a pool only a device can name
    Problem.from_json({**data, "version": 2})  # fine in version 2
    with pytest.raises(exogpu.InvalidArgument, match=field):
        Problem.from_json(data)


def test_a_problem_built_in_code_is_checked_too() -> None:
    problem = Problem.from_json(VALID)
    devices = (
        problem.devices[0].__class__(**{**problem.devices[0].__dict__, "stage_overhead": -0.5}),
        problem.devices[1],
    )
    with pytest.raises(exogpu.InvalidArgument, match=r"devices\[0\]\.stage_overhead"):
        Problem(layers=problem.layers, devices=devices, default_link=problem.default_link)
    with pytest.raises(exogpu.InvalidArgument, match=r"memory_pools\.ram"):
        Problem(
            layers=problem.layers,
            devices=problem.devices,
            default_link=problem.default_link,
            memory_pools={"ram": 0},
        )


def test_round_trip_keeps_every_term() -> None:
    problem = Problem.from_json(VALID)
    again = Problem.from_json(problem.to_json())
    assert again == problem
    assert solve(again, "latency").to_json() | {"solve_seconds": 0} == solve(
        problem, "latency"
    ).to_json() | {"solve_seconds": 0}


def test_output_reports_entry_exit_hops_and_offload() -> None:
    data = copy.deepcopy(VALID)
    data["devices"] = [data["devices"][0]]  # the CPU alone: 600 bytes in 500, 100 from disk
    data["memory_pools"] = {"ram": 500}
    data["endpoints"]["links"] = []
    out = solve(data, "latency").to_json()
    assert out["stages"][0]["offloaded_bytes"] == 100
    hops = out["hops"]
    assert [h["kind"] for h in hops] == ["entry", "exit"]
    assert hops[0]["from"] == "client" and hops[0]["to"] == "cpu" and hops[0]["after_layer"] == -1
    assert hops[1]["from"] == "cpu" and hops[1]["to"] == "client" and hops[1]["after_layer"] == 1
    # the default link: the client is not on the CPU's node
    assert hops[0]["time"] == pytest.approx(0.01 + 16 / 100.0)
    assert hops[1]["time"] == pytest.approx(0.01 + 64 / 100.0)
    expected_stage = 2 * 300 / 1000.0 + 0.01 + 100 / 100.0
    assert out["stages"][0]["time"] == pytest.approx(expected_stage)
    assert out["latency"] == pytest.approx(expected_stage + hops[0]["time"] + hops[1]["time"])
    again = Placement.from_json(out)
    assert again.hops[0].kind == "entry" and again.hops[0].after_layer == -1
    assert again.stages[0].offloaded_bytes == 100
