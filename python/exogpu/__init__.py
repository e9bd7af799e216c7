"""exogpu: the GPU layer for clusters of mixed accelerators.

One interface over every device here (CUDA, HIP, Metal, Vulkan, DirectML and
the CPU): discovery, memory, pooled allocation, transfers, streams and events.
"""

from __future__ import annotations

from exogpu._copy import copy
from exogpu._core import (
    BackendInfo,
    BackendUnavailable,
    Buffer,
    Device,
    DeviceError,
    DeviceInfo,
    Error,
    Event,
    HostBuffer,
    InvalidArgument,
    MemoryInfo,
    OutOfMemory,
    Pool,
    Stream,
    __version__,
    all_devices,
    backends,
    device,
    devices,
)

__all__ = [
    "BackendInfo",
    "BackendUnavailable",
    "Buffer",
    "Device",
    "DeviceError",
    "DeviceInfo",
    "Error",
    "Event",
    "HostBuffer",
    "InvalidArgument",
    "MemoryInfo",
    "OutOfMemory",
    "Pool",
    "Stream",
    "__version__",
    "all_devices",
    "backends",
    "copy",
    "device",
    "devices",
]
