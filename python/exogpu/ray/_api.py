"""Ray, imported only when asked for: `import exogpu` and `import exogpu.ray`
work without it. The module handle is typed Any on purpose: Ray's own hints
do not describe what `ray.remote` returns, and mypy must pass with Ray
installed or not."""

from __future__ import annotations

import importlib
from typing import Any

from exogpu.ray.errors import RayUnavailable

INSTALL_HINT = "pip install 'exogpu[ray]'"


def require_ray() -> Any:
    """The `ray` module; raises RayUnavailable (with the install hint) without it."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise RayUnavailable(f"Ray is not installed ({INSTALL_HINT}): {exc}") from None


def ray_module(name: str) -> Any:
    """A submodule of Ray, such as ``ray.util.scheduling_strategies``."""
    require_ray()
    return importlib.import_module(name)


def pinned(node_id: str) -> Any:
    """A scheduling strategy that runs a task or actor on `node_id` or not at all."""
    strategies = ray_module("ray.util.scheduling_strategies")
    return strategies.NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
