"""Audit records for refused connections that a flood cannot turn into a flood.

Every refusal is counted, none is dropped: for each (kind, reason, peer) the first
refusal in a window is written at once, the rest are counted and written as one
record carrying `count` when the window closes. Summing `count` over the records
gives every refusal the agent made, whatever the rate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Refusal", "RefusalLog"]

# Past this many open windows (distinct peers refused within one window), new
# peers share one window per kind and reason, so memory stays bounded too.
_MAX_WINDOWS = 4096


@dataclass
class Refusal:
    kind: str  # "tls_handshake", "connection_cap", "header_deadline", "http_parser"
    reason: str
    peer: str  # the peer's address, "*" once too many peers are refused at once
    details: dict[str, Any] = field(default_factory=dict)
    count: int = 1


Emit = Callable[[Refusal], None]


class RefusalLog:
    def __init__(self, emit: Emit, window: float = 1.0):
        self._emit = emit
        self.window = window
        self._open: dict[tuple[str, str, str], Refusal] = {}
        self._timers: dict[tuple[str, str, str], asyncio.TimerHandle] = {}
        self.total = 0  # every refusal seen, for metrics and for checking the log

    def add(self, kind: str, reason: str, peer: str, **details: Any) -> None:
        self.total += 1
        key = (kind, reason, peer)
        if key not in self._timers and len(self._timers) >= _MAX_WINDOWS:
            key = (kind, reason, "*")
        pending = self._open.get(key)
        if key in self._timers:
            if pending is None:
                self._open[key] = Refusal(kind, reason, key[2], details, 1)
            else:
                pending.count += 1
                pending.details = details  # the latest one stands for the window
            return
        self._emit(Refusal(kind, reason, key[2], details, 1))
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(self.window, self._close, key)

    def _close(self, key: tuple[str, str, str]) -> None:
        self._timers.pop(key, None)
        pending = self._open.pop(key, None)
        if pending is not None:
            self._emit(pending)

    def flush(self) -> None:
        """Write every counted refusal now (at shutdown)."""
        for key in list(self._timers):
            self._timers[key].cancel()
            self._close(key)
