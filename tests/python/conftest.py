from __future__ import annotations

import pytest

import exogpu


def _device_ids() -> list[str]:
    # Every view of every device, aliases included (lavapipe's vulkan:0 too).
    return [d.id for d in exogpu.all_devices()]


@pytest.fixture(params=_device_ids())
def device(request: pytest.FixtureRequest) -> exogpu.Device:
    return exogpu.device(request.param)
