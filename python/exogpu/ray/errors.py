"""The errors of exogpu.ray; each is an exogpu.Error, so the CLI prints its
message without a traceback."""

from __future__ import annotations

from exogpu import Error


class RayClusterError(Error):
    """Something on the Ray cluster failed: a node, a task, a placement group."""


class RayUnavailable(RayClusterError):
    """Ray is not installed, or no cluster answers at the address given."""


class RayTimeout(RayClusterError):
    """A wait on the cluster ran past its bound; the message says what was waited for."""


__all__ = ["RayClusterError", "RayTimeout", "RayUnavailable"]
