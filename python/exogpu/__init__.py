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
    all_devices,
    backends,
    core_version,
    device,
    devices,
)

__version__ = core_version

# The exceptions live in the native module; users meet them as exogpu.X.
for _error in (Error, OutOfMemory, InvalidArgument, BackendUnavailable, DeviceError):
    _error.__module__ = "exogpu"
del _error

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
