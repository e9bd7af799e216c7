"""The CLI's JSON, checked against the Python API, through a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

import exogpu


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exogpu", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_backends_json() -> None:
    result = run_cli("backends", "--json")
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    assert {r["name"] for r in rows} >= {"cpu", "cuda", "hip", "vulkan", "metal", "directml"}
    for row in rows:
        assert set(row) == {
            "name",
            "available",
            "reason",
            "device_count",
            "runtime_version",
            "note",
        }
        assert row["available"] == (row["reason"] == "")
    cpu = next(r for r in rows if r["name"] == "cpu")
    assert cpu["available"] and cpu["device_count"] == 1


def test_devices_json_matches_the_api() -> None:
    result = run_cli("devices", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["id"] for r in rows] == [d.id for d in exogpu.devices()]
    for row in rows:
        assert set(row) == {
            "id",
            "backend",
            "name",
            "vendor",
            "kind",
            "memory_total",
            "memory_free",
            "memory_source",
            "uuid",
            "pci_bus_id",
            "luid",
            "aliases",
        }
        assert 0 < row["memory_free"] <= row["memory_total"]
        assert row["kind"] in {"cpu", "discrete", "integrated", "virtual"}


@pytest.mark.skipif(sys.platform == "win32", reason="DirectML is there on Windows")
def test_backends_say_directml_is_a_windows_api_off_windows() -> None:
    result = run_cli("backends", "--json")
    assert result.returncode == 0, result.stderr
    directml = next(r for r in json.loads(result.stdout) if r["name"] == "directml")
    assert not directml["available"]
    assert "DirectML is a Windows API" in directml["reason"]
    assert "built" not in directml["reason"]


def test_backend_selection_from_the_environment() -> None:
    result = run_cli("backends", "--json", env={"EXOGPU_BACKENDS": "-cpu"})
    assert result.returncode == 0, result.stderr
    cpu = next(r for r in json.loads(result.stdout) if r["name"] == "cpu")
    assert not cpu["available"] and cpu["reason"] == "excluded by EXOGPU_BACKENDS"


def test_unknown_backend_in_the_environment_is_a_clear_error() -> None:
    result = run_cli("devices", env={"EXOGPU_BACKENDS": "cdua"})
    assert result.returncode != 0
    assert "unknown backend 'cdua'" in result.stderr
    assert "Traceback" not in result.stderr


def test_tables_render() -> None:
    result = run_cli("devices")
    assert result.returncode == 0 and "cpu:0" in result.stdout
