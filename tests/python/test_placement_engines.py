"""Engine profiles: llama.cpp's RPC star, priced by hand and by the solver."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest

import exogpu
from exogpu import models
from exogpu.cli import main
from exogpu.placement import Problem, evaluate, solve
from exogpu.placement.engines import ENGINES, apply_engine, llama_cpp_rpc


def tiny_model() -> list[dict[str, Any]]:
    config = {"hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 6,
              "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 8000}
    layers = models.Model.from_config(config).layers("q8_0", activation_dtype="f32")
    keys = ("name", "weight_bytes", "kv_bytes_per_token", "flops_per_token",
            "activation_bytes", "read_bytes_per_token")
    return [{k: getattr(x, k) for k in keys} for x in layers]


def star_problem(rng: random.Random, n_devices: int = 3) -> dict[str, Any]:
    devices = [{"id": f"n{i}:cpu:0", "node": f"n{i}", "memory_bytes": 1 << 40,
                "flops": rng.uniform(1e10, 1e11), "memory_bandwidth": rng.uniform(1e9, 2e10)}
               for i in range(n_devices)]
    links = [{"device": d["id"], "bandwidth": rng.uniform(1e6, 1e9),
              "latency": rng.uniform(0, 0.01)} for d in devices]
    return {
        "version": 2,
        "layers": tiny_model(),
        "devices": devices,
        # a direct link between servers that llama.cpp never uses
        "default_link": {"bandwidth": 1e12, "latency": 0.0},
        "endpoints": {"node": "client", "links": links},
    }


def by_hand(doc: dict[str, Any], stages: list[tuple[str, int, int]]) -> float:
    """One token through llama.cpp's RPC client: the embedding's output to
    the first server, each server's output back to the client and on to the
    next, the logits back from the last; the embedding never leaves the client."""
    layers = doc["layers"]
    link = {x["device"]: x for x in doc["endpoints"]["links"]}
    speed = {d["id"]: d for d in doc["devices"]}

    def send(device: str, nbytes: int) -> float:
        return link[device]["latency"] + nbytes / link[device]["bandwidth"]

    total = send(stages[0][0], layers[0]["activation_bytes"])
    for k, (device, first, last) in enumerate(stages):
        for x in layers[1 + first : 2 + last]:  # placed layer i is model layer i + 1
            total += max(x["flops_per_token"] / speed[device]["flops"],
                         x["read_bytes_per_token"] / speed[device]["memory_bandwidth"])
        out = layers[1 + last]["activation_bytes"]
        total += send(device, out)  # back to the client: logits after the last stage
        if k + 1 < len(stages):
            total += send(stages[k + 1][0], out)  # and on to the next server
    return total


def test_star_prices_every_split_as_llama_cpp_moves_the_bytes() -> None:
    rng = random.Random(16)
    for _ in range(20):
        doc = star_problem(rng)
        problem = llama_cpp_rpc(Problem.from_json(doc))
        n = len(problem.layers)
        ids = [d["id"] for d in doc["devices"]]
        order = rng.sample(ids, rng.randint(1, len(ids)))
        cuts = sorted(rng.sample(range(1, n), len(order) - 1))
        bounds = [0, *cuts, n]
        stages = [(d, bounds[k], bounds[k + 1] - 1) for k, d in enumerate(order)]
        assert evaluate(problem, stages, "latency").latency == pytest.approx(
            by_hand(doc, stages), rel=1e-9)


def test_plan_is_the_best_of_every_split_by_hand() -> None:
    doc = star_problem(random.Random(3))
    problem = llama_cpp_rpc(Problem.from_json(doc))
    n = len(problem.layers)
    ids = [d["id"] for d in doc["devices"]]
    best = min(
        by_hand(doc, [(d, b[k], b[k + 1] - 1) for k, d in enumerate(order)])
        for m in range(1, len(ids) + 1)
        for order in itertools.permutations(ids, m)
        for cuts in itertools.combinations(range(1, n), m - 1)
        for b in [[0, *cuts, n]]
    )
    assert solve(problem, "latency").latency == pytest.approx(best, rel=1e-9)


def test_logits_keep_a_slow_link_off_the_last_stage() -> None:
    doc = star_problem(random.Random(5), n_devices=2)
    room = doc["layers"][1]["weight_bytes"] * 5  # neither server holds the whole model
    for d in doc["devices"]:
        d.update(flops=5e10, memory_bandwidth=1e10, memory_bytes=room)
    slow, fast = doc["endpoints"]["links"]
    slow.update(bandwidth=1e6, latency=1e-3)  # 8000 x 4 bytes of logits: 32 ms here
    fast.update(bandwidth=1e9, latency=1e-3)
    plan = solve(llama_cpp_rpc(Problem.from_json(doc)), "latency")
    assert [s.device for s in plan.stages] == [slow["device"], fast["device"]]


def test_the_client_keeps_the_embedding() -> None:
    doc = star_problem(random.Random(1))
    problem = llama_cpp_rpc(Problem.from_json(doc))
    assert [x.name for x in problem.layers] == [x["name"] for x in doc["layers"][1:]]
    assert problem.endpoints is not None
    assert problem.endpoints.input_bytes == 4 * 512  # a float32 hidden state
    assert problem.endpoints.output_bytes == 4 * 8000  # float32 logits
    assert apply_engine(Problem.from_json(doc), "direct") == Problem.from_json(doc)
    assert ENGINES == ("direct", "llama.cpp-rpc")


def test_refusals_name_what_is_missing() -> None:
    doc = star_problem(random.Random(2))
    without = {k: v for k, v in doc.items() if k != "endpoints"}
    with pytest.raises(exogpu.InvalidArgument, match="needs the problem's endpoints"):
        llama_cpp_rpc(Problem.from_json(without))
    no_embedding = {**doc, "layers": doc["layers"][1:]}
    with pytest.raises(exogpu.InvalidArgument, match="must be the token embedding"):
        llama_cpp_rpc(Problem.from_json(no_embedding))
    with pytest.raises(exogpu.InvalidArgument, match="engine must be one of"):
        apply_engine(Problem.from_json(doc), "vllm-ray")


def star_cluster_file(tmp_path: Path) -> Path:
    """Two CPU servers that together, not alone, hold the model, and the
    llama.cpp client's links to them, one slow."""
    cluster = {
        "devices": [{"id": f"{n}:cpu:0", "node": n, "memory_bytes": 14 << 20,
                     "flops": 5e10, "memory_bandwidth": 1e10} for n in ("a", "b")],
        "default_link": {"bandwidth": 1e12, "latency": 0.0},
        "endpoints": {"node": "client", "links": [
            {"device": "a:cpu:0", "bandwidth": 1e6, "latency": 1e-3},
            {"device": "b:cpu:0", "bandwidth": 1e9, "latency": 1e-3}]},
        "nodes": {"a": {"address": "10.0.0.1"}, "b": {"address": "10.0.0.2"}},
    }
    path = tmp_path / "star.json"
    path.write_text(json.dumps(cluster))
    config = {"hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 6,
              "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 8000}
    (tmp_path / "config.json").write_text(json.dumps(config))
    return path


def test_plan_cli_prices_llama_cpp_and_emits_its_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = star_cluster_file(tmp_path)
    args = ["plan", "--model", str(tmp_path / "config.json"), "--cluster", str(cluster),
            "--dtype", "q8_0", "--json"]
    assert main([*args, "--engine", "llama.cpp-rpc", "--emit", "llama.cpp"]) == 0
    out = json.loads(capsys.readouterr().out)
    stages = out["placement"]["stages"]
    # 6 blocks and the output are placed, the embedding stays on the client;
    # the logits come back over b's fast link, not a's slow one
    assert stages[-1]["last_layer"] == 6 and stages[-1]["device"] == "b:cpu:0"
    assert out["emit"]["rpc"] == ["10.0.0.1:50052", "10.0.0.2:50052"]
    assert out["emit"]["n_gpu_layers"] == 7
    # the contract's direct hops know no client: it prices the same model otherwise
    assert main(args) == 0
    direct = json.loads(capsys.readouterr().out)["placement"]
    assert direct["stages"][-1]["last_layer"] == 7
    assert direct["latency"] < out["placement"]["latency"]


def test_engine_needs_endpoints_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = star_problem(random.Random(4))
    del doc["endpoints"]
    path = tmp_path / "problem.json"
    path.write_text(json.dumps(doc))
    assert main(["place", "--problem", str(path), "--engine", "llama.cpp-rpc"]) == 2
    assert "needs the problem's endpoints" in capsys.readouterr().err
