from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import exogpu


def _device_ids() -> list[str]:
    # Every view of every device, aliases included (lavapipe's vulkan:0 too).
    return [d.id for d in exogpu.all_devices()]


@pytest.fixture(params=_device_ids())
def device(request: pytest.FixtureRequest) -> exogpu.Device:
    return exogpu.device(request.param)


@pytest.fixture(autouse=True)
def _private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    # Profiles measured by tests (and CLI subprocesses) never touch the user's cache.
    cache = tmp_path_factory.mktemp("exogpu-cache")
    monkeypatch.setenv("EXOGPU_CACHE_DIR", str(cache))
    yield cache


# Modules whose behaviour does not depend on which devices are present: the
# security layer, the network probe, the placement search on problem files, Ray
# on its own lab. tools/test.sh runs the suite a second time beside simulated
# GPUs with EXOGPU_TEST_DEVICES_ONLY=1, and that pass leaves these out. A module
# missing from this list only runs twice; one listed wrongly would lose the
# simulated devices' coverage, so list only modules that never touch a device.
DEVICE_INDEPENDENT_MODULES = frozenset({
    "test_agent_reload", "test_agent_revocation", "test_agent_tls", "test_attack_agent",
    "test_audit", "test_audit_cli", "test_audit_crash", "test_audit_seal", "test_audit_tamper",
    "test_bounded_input", "test_emit_cli", "test_emit_engines", "test_emit_llama_cpp",
    "test_models", "test_netprobe", "test_netprobe_lab",
    "test_netprobe_server", "test_placement_budget", "test_placement_fuzz",
    "test_placement_hostile", "test_placement_milp", "test_placement_oracle",
    "test_ray_cluster", "test_rbac", "test_rbac_state_machine", "test_thermal", "test_tls",
    "test_topology", "test_topology_agent",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("EXOGPU_TEST_DEVICES_ONLY") != "1":
        return
    keep, drop = [], []
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module else ""
        (drop if module in DEVICE_INDEPENDENT_MODULES else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
