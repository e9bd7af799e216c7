"""Device profiles: measured entries, the on-disk cache and its staleness."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

import exogpu
from exogpu import profile

PLACEMENT_KEYS = {"id", "node", "memory_bytes", "flops", "memory_bandwidth"}


@pytest.fixture(scope="module")
def measured() -> profile.Profile:
    return profile.measure_profile(quick=True)


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EXOGPU_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "profile.json"


def with_fma_kernel(details: list[dict[str, Any]]) -> set[str]:
    """Physical devices with an FMA kernel on one of their ids; the others
    (HIP alone has none) get no measured FLOP/s and no placement entry."""
    return {d["alias_of"] or d["id"] for d in details if d.get("fma_supported")}


def test_one_placement_entry_per_physical_device(measured: profile.Profile) -> None:
    node = profile.node_name()
    kernels = with_fma_kernel(measured.details)
    physical = [dev for dev in exogpu.devices() if dev.id in kernels]
    assert "cpu:0" in kernels
    assert [d["id"] for d in measured.devices] == [dev.id for dev in physical]
    for left_out in {dev.id for dev in exogpu.devices()} - kernels:
        entry = next(d for d in measured.details if d["id"] == left_out)
        assert "error" not in entry and entry["flops"] == 0, entry
    for entry, dev in zip(measured.devices, physical, strict=True):
        assert set(entry) == PLACEMENT_KEYS
        assert entry["node"] == node
        assert entry["memory_bytes"] == dev.info.memory_total
        for key in ("flops", "memory_bandwidth"):
            assert math.isfinite(entry[key]) and entry[key] > 0, key


def test_details_cover_every_alias_once(measured: profile.Profile) -> None:
    expected = []
    for dev in exogpu.devices():
        expected.append((dev.id, None))
        expected.extend((alias, dev.id) for alias in dev.info.aliases)
    assert [(d["id"], d["alias_of"]) for d in measured.details] == expected
    for d in measured.details:
        assert d["bytes_counted"] == "once"
        assert d["memory_bandwidth"] == pytest.approx(2 * d["d2d_bandwidth"])
        assert d["h2d_bandwidth"] > 0 and d["d2h_bandwidth"] > 0
        assert 0 < d["seconds"] < 30  # --quick: a few seconds per device


def test_cpu_entry_uses_the_fma_kernel(measured: profile.Profile) -> None:
    cpu = next(d for d in measured.details if d["id"] == "cpu:0")
    assert cpu["fma_supported"]
    entry = next(e for e in measured.devices if e["id"] == "cpu:0")
    assert entry["flops"] == cpu["flops"]


def test_measured_figures_feed_the_discovered_cluster(measured: profile.Profile) -> None:
    from exogpu.cluster import discover

    cluster = discover().with_profile(measured.measured())
    by_id = {d.id: d for d in cluster.devices}
    for entry in measured.devices:
        dev = by_id[entry["id"]]
        assert dev.speed_source == "measured"
        assert dev.flops == entry["flops"]
        assert dev.memory_bandwidth == entry["memory_bandwidth"]


def test_cache_round_trips(measured: profile.Profile, cache: Path) -> None:
    assert profile.cache_path() == cache
    written = profile.save_profile(measured)
    assert written == cache
    assert [p.name for p in cache.parent.iterdir()] == ["profile.json"]  # no temp files left
    loaded = profile.load_profile()
    assert loaded is not None
    assert loaded.to_dict() == measured.to_dict()
    assert json.loads(cache.read_text())["devices"] == measured.devices


def _rewrite(cache: Path, **changes: object) -> None:
    data = json.loads(cache.read_text())
    data.update(changes)
    cache.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"exogpu_version": "0.0.0-older"}, "exogpu 0.0.0-older"),
        ({"runtimes": {"cpu": "glibc 0.1"}}, "runtimes changed"),
        ({"identity": [{"id": "cpu:0", "name": "another CPU"}]}, "devices changed"),
        ({"measured_at": 1.0}, "maximum age"),
    ],
)
def test_cache_goes_stale(
    measured: profile.Profile, cache: Path, change: dict[str, object], reason: str
) -> None:
    profile.save_profile(measured)
    assert profile.load_profile() is not None
    _rewrite(cache, **change)
    assert profile.load_profile() is None
    found, why = profile.profile_status()
    assert found is None
    assert why is not None and reason in why


def test_cache_goes_stale_when_exogpu_is_upgraded(
    measured: profile.Profile, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    profile.save_profile(measured)
    monkeypatch.setattr(exogpu, "__version__", "99.0.0")
    found, why = profile.profile_status()
    assert found is None
    assert why is not None and "now 99.0.0" in why


def test_max_age_is_honoured(measured: profile.Profile, cache: Path) -> None:
    profile.save_profile(measured)
    assert profile.load_profile(max_age=3600) is not None
    assert profile.load_profile(max_age=-1) is None


@pytest.mark.parametrize(
    "content",
    ["", "{not json", "[]", json.dumps({"schema": 999})],
)
def test_unreadable_cache_is_no_profile(cache: Path, content: str) -> None:
    cache.parent.mkdir(parents=True)
    cache.write_text(content)
    found, why = profile.profile_status()
    assert found is None
    assert why is not None and "no readable profile" in why


def test_tampered_entries_are_rejected(measured: profile.Profile, cache: Path) -> None:
    profile.save_profile(measured)
    data = json.loads(cache.read_text())
    data["devices"][0]["flops"] = -1.0
    cache.write_text(json.dumps(data))
    assert profile.load_profile() is None
    with pytest.raises(ValueError, match="'flops' must be positive and finite"):
        profile.Profile.from_dict(data)


def test_ensure_profile_reuses_a_fresh_cache(measured: profile.Profile, cache: Path) -> None:
    profile.save_profile(measured)
    again = profile.ensure_profile()
    assert again.measured_at == measured.measured_at


def test_ensure_profile_measures_when_missing(cache: Path) -> None:
    assert not cache.exists()
    fresh = profile.ensure_profile(quick=True)
    assert cache.exists()
    assert profile.load_profile() is not None
    assert profile.ensure_profile().measured_at == fresh.measured_at


def test_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXOGPU_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert profile.cache_dir() == tmp_path / "xdg" / "exogpu"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert profile.cache_dir() == tmp_path / "home" / ".cache" / "exogpu"
    monkeypatch.setenv("EXOGPU_CACHE_DIR", str(tmp_path / "explicit"))
    assert profile.cache_path() == tmp_path / "explicit" / "profile.json"
