"""`exogpu bench memory` and `exogpu profile` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import exogpu
from exogpu.cli import main


def test_bench_memory_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "memory", "--json", "--max-bytes", "64K", "--samples", "2"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["device"] == exogpu.devices()[0].id
    assert data["bytes_counted"] == "once"
    assert data["units"] == {
        "bytes": "bytes",
        "seconds": "s",
        "bandwidth": "bytes/s",
        "flops": "FLOP/s",
    }
    assert data["max_bytes"] == 64 << 10
    copy_keys = {
        "kind",
        "bytes",
        "bytes_moved",
        "repeats",
        "seconds",
        "bandwidth",
        "bandwidth_min",
        "bandwidth_max",
        "timing",
        "source",
        "destination",
    }
    assert data["copies"]
    for c in data["copies"]:
        assert set(c) == copy_keys
        assert set(c["seconds"]) == {"median", "min", "max", "samples"}
        assert c["seconds"]["samples"] == 2
        assert c["bytes"] in (4 << 10, 16 << 10, 64 << 10)
    sizes = [4, 16, 64, 256, 1024, 4096]
    assert [(x["path"], x["bytes"]) for x in data["latency"]] == [
        *(("sync", n) for n in sizes),
        *(("stream", n) for n in sizes),
    ]
    assert {a["path"] for a in data["allocation"]} == {"pool", "device"}


def test_bench_memory_table_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    plot = tmp_path / "bandwidth.png"
    code = main(
        [
            "bench",
            "memory",
            "--device",
            "cpu:0",
            "--kinds",
            "d2d,h2d_pinned",
            "--max-bytes",
            "256K",
            "--samples",
            "2",
            "--plot",
            str(plot),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "bytes counted once" in out
    assert "256 KiB" in out and "d2d" in out and "h2d pinned" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot.stat().st_size > 10_000


def test_bench_memory_unknown_device(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "memory", "--device", "nosuch:3"]) == 2
    assert "nosuch:3" in capsys.readouterr().err


def test_bench_memory_unknown_kind(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "memory", "--kinds", "sideways", "--max-bytes", "4K"]) == 2
    assert "unknown copy kind 'sideways'" in capsys.readouterr().err


def test_bench_memory_bad_size() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "memory", "--max-bytes", "12X"])
    assert exit_info.value.code == 2


def test_profile_json_writes_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EXOGPU_CACHE_DIR", str(tmp_path))
    assert main(["profile", "--quick", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["quick"] is True
    with_kernel = {d["alias_of"] or d["id"] for d in printed["details"] if d.get("fma_supported")}
    assert [d["id"] for d in printed["devices"]] == [
        dev.id for dev in exogpu.devices() if dev.id in with_kernel
    ]
    for entry in printed["devices"]:
        assert set(entry) == {"id", "node", "memory_bytes", "flops", "memory_bandwidth"}
    cached = json.loads((tmp_path / "profile.json").read_text())
    assert cached == printed

    # --cached shows the same measurement instead of measuring again.
    assert main(["profile", "--cached", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["measured_at"] == printed["measured_at"]

    assert main(["profile", "--cached"]) == 0
    table = capsys.readouterr().out
    assert "cpu:0" in table and "GFLOP/s" in table
