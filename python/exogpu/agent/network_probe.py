"""The agent's network-probe servers: one per request, each for one session.

`POST /v1/probe/network` starts an `exogpu.netprobe.Server` on the agent's bind
address with a fresh token and an OS-chosen port. The token is good for one
measurement: the server is closed once a session completes, or after `ttl`
seconds, whichever comes first. At most `max_servers` run at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["NetworkProbeServers", "TooManyProbeServers"]


class TooManyProbeServers(RuntimeError):
    pass


class NetworkProbeServers:
    def __init__(self, ttl: float = 120.0, max_servers: int = 4, poll: float = 0.2):
        self.ttl, self.max_servers, self.poll = ttl, max_servers, poll
        self._watchers: set[asyncio.Task[None]] = set()
        self._servers: set[Any] = set()

    async def __call__(self, token: str, bind: str) -> dict[str, Any]:
        from exogpu import netprobe

        if len(self._servers) >= self.max_servers:
            raise TooManyProbeServers(
                f"{len(self._servers)} network-probe servers already running "
                f"(at most {self.max_servers}); try again once one finishes"
            )
        server = netprobe.Server(bind=bind, port=0, token=token, max_sessions=1)
        self._servers.add(server)
        task = asyncio.get_running_loop().create_task(self._expire(server))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        return {"port": server.port, "address": server.address, "expires_in_s": self.ttl}

    async def _expire(self, server: Any) -> None:
        deadline = asyncio.get_running_loop().time() + self.ttl
        try:
            while asyncio.get_running_loop().time() < deadline:
                if server.stats().sessions_completed >= 1:
                    break
                await asyncio.sleep(self.poll)
        finally:
            server.close()
            self._servers.discard(server)

    @property
    def running(self) -> int:
        return len(self._servers)

    async def close(self) -> None:
        for task in list(self._watchers):
            task.cancel()
        for task in list(self._watchers):
            with contextlib.suppress(asyncio.CancelledError):
                await task
