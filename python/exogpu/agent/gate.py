"""The door every TCP connection goes through before the HTTP server sees a byte.

A `Gate` is the protocol of one accepted connection. It refuses the connection at
once when its address opens connections faster than `new_per_peer_per_second`
(after a burst), or the agent holds `max_connections` in total or `max_per_peer`
from that address; otherwise it runs the TLS handshake itself (`loop.start_tls`, bounded by
`handshake_timeout`), so a failed handshake is known together with the peer's
address, and only then hands the TLS transport to the HTTP protocol. From the end
of the handshake, and from the first byte of every later request, the request's
headers must be parsed within `header_timeout` or the connection is cut
(a client dribbling headers holds a slot for that long at most).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Gate", "GateEvents", "Gates", "Limits", "Listener", "subject_of"]


@dataclass(frozen=True)
class Limits:
    max_connections: int = 512
    max_per_peer: int = 64
    # New connections a peer may open per second, after a burst of max_per_peer:
    # a handshake costs the agent a signature, so an address that reconnects
    # without end is turned away before the TLS layer, not after it.
    new_per_peer_per_second: float = 20.0
    handshake_timeout: float = 10.0
    header_timeout: float = 10.0
    keepalive_timeout: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_per_peer"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        rate = self.new_per_peer_per_second
        if not 0 < rate < 1e6:
            raise ValueError(
                f"new_per_peer_per_second must be more than 0 and under 1000000, got {rate}"
            )
        for name in ("handshake_timeout", "header_timeout", "keepalive_timeout"):
            value = getattr(self, name)
            if not 0 < value < 86400:
                raise ValueError(f"{name} must be more than 0 and under a day, got {value}")


_MAX_BUCKETS = 8192


def subject_of(peercert: Any) -> str | None:
    """The subject of a certificate as `ssl` decodes it, as `CN=alice,O=...`."""
    if not peercert:
        return None
    parts = [f"{key}={value}" for rdn in peercert.get("subject", ()) for key, value in rdn]
    return ",".join(parts) or None


class GateEvents(Protocol):
    """What a gate tells its owner."""

    def refused(
        self, kind: str, reason: str, peer: str, subject: str | None, **details: Any
    ) -> None: ...

    def handshake_done(self, peer: str, error: BaseException | None) -> None: ...

    def make_protocol(self) -> asyncio.Protocol: ...


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(getattr(exc, "verify_message", None) or exc.reason or exc)
    if isinstance(exc, ConnectionAbortedError) and "taking longer" in str(exc):
        return "handshake timeout"
    return type(exc).__name__ if not str(exc) else str(exc)


class Gates:
    """All open gates: counts in total and per peer, and the gate of a TLS transport."""

    def __init__(self, limits: Limits, context: ssl.SSLContext, events: GateEvents):
        self.limits = limits
        self.context = context
        self.events = events
        self.open = 0
        self.per_peer: Counter[str] = Counter()
        self._by_transport: dict[asyncio.BaseTransport, Gate] = {}
        self._all: set[Gate] = set()
        self._buckets: dict[str, tuple[float, float]] = {}  # peer -> (tokens, when)

    def take_token(self, peer: str) -> bool:
        """A token bucket per peer: True when `peer` may open a connection now."""
        rate = self.limits.new_per_peer_per_second
        burst = float(self.limits.max_per_peer)
        now = asyncio.get_running_loop().time()
        tokens, when = self._buckets.get(peer, (burst, now))
        tokens = min(burst, tokens + (now - when) * rate)
        allowed = tokens >= 1.0
        self._buckets[peer] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > _MAX_BUCKETS:  # forget peers whose bucket is full again
            full = burst / rate
            self._buckets = {p: b for p, b in self._buckets.items() if now - b[1] < full}
        return allowed

    def factory(self) -> Gate:
        return Gate(self)

    def request_started(self, transport: asyncio.BaseTransport | None) -> None:
        gate = self._by_transport.get(transport) if transport is not None else None
        if gate is not None:
            gate.busy = True
            gate.cancel_deadline()

    def request_finished(self, transport: asyncio.BaseTransport | None) -> None:
        gate = self._by_transport.get(transport) if transport is not None else None
        if gate is not None:
            gate.busy = False

    def abort_all(self) -> None:
        """Cut connections still in their handshake (at shutdown)."""
        for gate in list(self._all):
            if gate.protocol is None:
                gate.abort()


class Gate(asyncio.Protocol):
    def __init__(self, gates: Gates):
        self.gates = gates
        self.peer = "?"
        self.raw: asyncio.Transport | None = None
        self.tls: asyncio.Transport | None = None
        self.protocol: asyncio.Protocol | None = None
        self.busy = False
        self._pending: list[bytes] = []
        self._eof = False
        self._admitted = False
        self._deadline: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._aborted = False

    # -- raw connection ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.raw = transport
        address = transport.get_extra_info("peername")
        self.peer = str(address[0]) if address else "?"
        gates, limits = self.gates, self.gates.limits
        reason = None
        kind = "connection_cap"
        if not gates.take_token(self.peer):
            kind = "connection_rate"
            reason = (
                f"more than {limits.new_per_peer_per_second:g} new connections a second "
                "from this peer"
            )
        elif gates.open >= limits.max_connections:
            reason = f"{gates.open} connections open, the limit is {limits.max_connections}"
        elif gates.per_peer[self.peer] >= limits.max_per_peer:
            reason = (
                f"{gates.per_peer[self.peer]} connections open from this peer, "
                f"the limit is {limits.max_per_peer}"
            )
        if reason is not None:
            self._aborted = True
            transport.abort()
            gates.events.refused(kind, reason, self.peer, None)
            return
        self._admitted = True
        gates.open += 1
        gates.per_peer[self.peer] += 1
        gates._all.add(self)
        transport.pause_reading()  # nothing is read until the TLS layer is in place
        self._task = asyncio.get_running_loop().create_task(self._handshake())

    async def _handshake(self) -> None:
        assert self.raw is not None
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                self.raw,
                self,
                self.gates.context,
                server_side=True,
                ssl_handshake_timeout=self.gates.limits.handshake_timeout,
            )
        except asyncio.CancelledError:
            self.abort()
            raise
        except Exception as exc:  # every failure is the peer's: bad certificate, timeout, reset
            self.gates.events.handshake_done(self.peer, exc)
            if not self._aborted:
                self.gates.events.refused(
                    "tls_handshake", _reason(exc), self.peer, None, error=str(exc)
                )
            self.abort()
            self._release()
            return
        if tls is None or self._aborted:  # cut while the handshake finished
            self._release()
            return
        self.gates.events.handshake_done(self.peer, None)
        self.tls = tls
        self.gates._by_transport[tls] = self
        self._arm()
        protocol = self.gates.events.make_protocol()
        self.protocol = protocol
        protocol.connection_made(tls)
        pending, self._pending = self._pending, []
        for chunk in pending:
            protocol.data_received(chunk)
        if self._eof:
            protocol.eof_received()

    # -- deadline ------------------------------------------------------------------------
    def _arm(self) -> None:
        if self._deadline is None and not self.busy:
            loop = asyncio.get_running_loop()
            self._deadline = loop.call_later(self.gates.limits.header_timeout, self._expired)

    def cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.busy or self._aborted:
            return
        subject = subject_of(self.tls.get_extra_info("peercert")) if self.tls else None
        self.gates.events.refused(
            "header_deadline",
            f"request headers not complete within {self.gates.limits.header_timeout} s",
            self.peer,
            subject,
        )
        self.abort()

    def abort(self) -> None:
        self._aborted = True
        self.cancel_deadline()
        transport = self.tls or self.raw
        if transport is not None and not transport.is_closing():
            transport.abort()
        elif self.raw is not None:
            self.raw.abort()

    def _release(self) -> None:
        if self._admitted:
            self._admitted = False
            gates = self.gates
            gates.open -= 1
            gates.per_peer[self.peer] -= 1
            if gates.per_peer[self.peer] <= 0:
                del gates.per_peer[self.peer]
            gates._all.discard(self)
            if self.tls is not None:
                gates._by_transport.pop(self.tls, None)

    # -- data from the TLS layer, forwarded to the HTTP protocol --------------------------
    def data_received(self, data: bytes) -> None:
        if self.tls is not None and not self.busy:
            self._arm()
        if self.protocol is None:
            self._pending.append(data)
        else:
            self.protocol.data_received(data)

    def eof_received(self) -> bool | None:
        if self.protocol is None:
            self._eof = True
            return None
        return self.protocol.eof_received()

    def pause_writing(self) -> None:
        if self.protocol is not None:
            self.protocol.pause_writing()

    def resume_writing(self) -> None:
        if self.protocol is not None:
            self.protocol.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_deadline()
        self._release()
        protocol, self.protocol = self.protocol, None
        if protocol is not None:
            protocol.connection_lost(exc)



# Back-off when accept() finds no descriptor: from the first failure, doubling to
# the cap, back to the start once a connection is accepted again.
_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 2.0
_ACCEPTS_PER_TICK = 64
_EXHAUSTED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class Listener:
    """The listening socket, accepted by hand rather than by `loop.create_server`.

    asyncio's own accept loop (CPython 3.11 to 3.13) keeps calling accept() after
    EMFILE within one wake-up, reporting each failure and scheduling one retry per
    failure, so a flood that exhausts descriptors multiplies into thousands of log
    records a second. Here one failure stops accepting, and accepting resumes after
    a back-off that doubles while the failures go on; `on_exhausted` is told once
    per failure (the agent counts them and logs a summary)."""

    def __init__(
        self,
        gates: Gates,
        host: str,
        port: int,
        *,
        backlog: int = 1024,
        on_exhausted: Callable[[OSError, float], None] | None = None,
    ):
        self.gates = gates
        self.host, self.port, self.backlog = host, port, backlog
        self.on_exhausted = on_exhausted
        self.delay = _BACKOFF_FIRST
        self._sock: socket.socket | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self) -> int:
        family, kind, proto, _, address = socket.getaddrinfo(
            self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(self.backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._ready)
        return int(sock.getsockname()[1])

    def _ready(self) -> None:
        sock = self._sock
        if sock is None:
            return
        loop = asyncio.get_running_loop()
        for _ in range(_ACCEPTS_PER_TICK):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in _EXHAUSTED:
                    self._back_off(exc)
                return  # anything else: the next wake-up tries again
            self.delay = _BACKOFF_FIRST
            conn.setblocking(False)
            task = loop.create_task(self._connect(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(self.gates.factory, conn)
        except OSError:
            conn.close()

    def _back_off(self, exc: OSError) -> None:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._sock.fileno())
        if self.on_exhausted is not None:
            self.on_exhausted(exc, self.delay)
        self._retry = loop.call_later(self.delay, self._resume)
        self.delay = min(self.delay * 2, _BACKOFF_MAX)

    def _resume(self) -> None:
        self._retry = None
        if self._sock is not None:
            asyncio.get_running_loop().add_reader(self._sock.fileno(), self._ready)

    def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        for task in self._tasks:
            task.cancel()
