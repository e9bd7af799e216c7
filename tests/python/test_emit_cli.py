"""`exogpu plan/place --emit ENGINE`: the commands printed and in --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exogpu.cli import main
from exogpu.placement import Problem, solve
from exogpu.placement.emit import emit_llama_cpp

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "benchmarks" / "clusters" / "home-mixed.json"
ADDRESSES = ["--address", "mac=10.0.0.1", "--address", "pc=10.0.0.2:50060",
             "--address", "laptop=10.0.0.3"]  # fmt: skip
PLAN = ["plan", "--cluster", str(HOME), "--model", "llama-3-70b", "--dtype", "int4", "--no-measure"]


def test_plan_prints_the_llama_cpp_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*PLAN, "--emit", "llama.cpp", *ADDRESSES, "--model-file", "l70.gguf"]) == 0
    out = capsys.readouterr().out
    assert "To run it with llama.cpp:" in out
    server = next(line for line in out.splitlines() if line.startswith("llama-server "))
    assert server.startswith("llama-server -m l70.gguf --rpc ")
    assert "--tensor-split " in server and " -ngl 81" in server  # 80 blocks + the output
    assert "rpc-server --host 10.0.0.2 --port 50060" in out
    assert next(line for line in out.splitlines() if line.startswith("llama-bench ")).count("/") > 0


def test_plan_json_carries_the_emitted_plan(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*PLAN, "--emit", "llama.cpp", *ADDRESSES, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    emitted = out["emit"]
    assert emitted["engine"] == "llama.cpp"
    # the same as the library gives for the same plan
    stages = out["placement"]["stages"]
    assert sum(emitted["tensor_split"]) == emitted["n_gpu_layers"] == 81
    assert emitted["device_ids"] == [s["device"] for s in stages if s["last_layer"] > 0]
    assert emitted["argv"][0] == "llama-server"
    assert all(c["argv"] for c in emitted["commands"])


def test_cluster_file_addresses_are_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(HOME.read_text())
    data["nodes"] = {"mac": {"address": "10.1.0.1"}, "pc": {"address": "10.1.0.2"},
                     "laptop": {"address": "10.1.0.3"}}  # fmt: skip
    path = tmp_path / "home.json"
    path.write_text(json.dumps(data))
    args = ["plan", "--cluster", str(path), "--model", "llama-3-8b", "--no-measure"]
    assert main([*args, "--emit", "llama.cpp", "--json", "--address", "pc=10.9.9.9"]) == 0
    rpc = json.loads(capsys.readouterr().out)["emit"]["rpc"]
    assert rpc and all(r.startswith(("10.1.0.", "10.9.9.9:")) for r in rpc)
    # the command-line address wins over the file's
    assert "10.1.0.2:50052" not in rpc
    data["nodes"]["moon"] = {"address": "10.1.0.9"}
    path.write_text(json.dumps(data))
    assert main([*args, "--emit", "llama.cpp"]) == 2
    assert "nodes.moon: no device is on this node" in capsys.readouterr().err


def test_plan_emits_vllm_and_prima(capsys: pytest.CaptureFixture[str]) -> None:
    two = ROOT / "benchmarks" / "clusters" / "two-servers.json"
    assert main(["plan", "--cluster", str(two), "--model", "llama-3-70b", "--no-measure",
                 "--emit", "vllm", "--json"]) == 0  # fmt: skip
    emitted = json.loads(capsys.readouterr().out)["emit"]
    assert sum(emitted["layer_partition"]) == 80
    assert emitted["argv"][:3] == ["vllm", "serve", "meta-llama/Meta-Llama-3-70B"]
    macs = ROOT / "benchmarks" / "clusters" / "mac-studios-4090.json"
    hosts = ["--address", "studio1=10.0.0.1", "--address", "studio2=10.0.0.2",
             "--address", "pc=10.0.0.3"]  # fmt: skip
    assert main(["plan", "--cluster", str(macs), "--model", "llama-3-70b", "--no-measure",
                 "--emit", "prima.cpp", *hosts, "--json"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    emitted, stages = out["emit"], out["placement"]["stages"]
    assert sum(emitted["layer_window"]) == 80 and emitted["world"] == len(stages)
    # the last stage's node is rank 0, the head; every rank's command names it as master
    head = emitted["ranks"][0]
    assert head["devices"] == [stages[-1]["device"]]
    for r in emitted["ranks"]:
        argv = r["argv"]
        assert argv[argv.index("--master") + 1] == head["host"]
    assert "-lw" in head["argv"]


def test_place_emits_for_a_problem_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from exogpu import cluster, models

    problem = Problem.from_model(
        models.get("llama-3-8b"), cluster.Cluster.from_file(HOME), memory_headroom=0.1
    )
    path = tmp_path / "p.json"
    path.write_text(json.dumps(problem.to_json()))
    args = ["place", "--problem", str(path), "--objective", "latency", "--emit", "llama.cpp"]
    assert main([*args, *ADDRESSES, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    addresses = {"mac": "10.0.0.1", "pc": "10.0.0.2:50060", "laptop": "10.0.0.3"}
    expected = emit_llama_cpp(solve(problem, "latency"), problem, addresses)
    assert out["emit"] == expected.to_json()


def test_errors_are_clean(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as bad_engine:
        main([*PLAN, "--emit", "ollama"])
    assert bad_engine.value.code == 2
    assert "invalid choice: 'ollama'" in capsys.readouterr().err
    # a node with no address
    assert main([*PLAN, "--emit", "llama.cpp", "--address", "mac=10.0.0.1"]) == 2
    err = capsys.readouterr().err
    assert "llama.cpp cannot run this plan: no address is known for node" in err
    assert "Traceback" not in err
    # a plan on Macs is no vLLM pipeline
    macs = ROOT / "benchmarks" / "clusters" / "mac-studios-4090.json"
    assert main(["plan", "--cluster", str(macs), "--model", "llama-3-70b", "--emit", "vllm"]) == 2
    assert "vllm cannot run this plan" in capsys.readouterr().err
    assert main([*PLAN, "--emit", "vllm", "--client", "pc"]) == 2
    assert "a client node is llama.cpp's; vllm has none" in capsys.readouterr().err
    assert main([*PLAN, "--address", "mac=10.0.0.1"]) == 2
    assert "--address and --client go with --emit" in capsys.readouterr().err
    assert main([*PLAN, "--emit", "llama.cpp", "--address", "mac"]) == 2
    assert "expected NODE=HOST[:PORT]" in capsys.readouterr().err
