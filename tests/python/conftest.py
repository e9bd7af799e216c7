from __future__ import annotations

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
