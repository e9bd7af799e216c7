"""Network probe: TCP throughput, round-trip time, UDP jitter and loss.

A :class:`Server` runs on native threads (started and stopped from Python,
the GIL released) and answers only clients presenting its token. :func:`measure`
runs the client against one server:

- TCP bulk throughput over ``streams`` parallel connections for ``seconds``,
  counted by the receiver from its first byte to its last;
- round-trip time by a ping-pong of small frames with ``TCP_NODELAY``
  (median, 99th percentile, minimum), after five warm-up exchanges;
- UDP jitter (RFC 3550 interarrival estimator) and loss at ``udp_rate``
  bit/s, with sequence numbers that tell reordering and duplicates from loss.

>>> with Server(bind="127.0.0.1", port=0) as server:                # doctest: +SKIP
...     print(measure("127.0.0.1", server.port, server.token).to_json())
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from exogpu import _core
from exogpu._core import InvalidArgument, ProbeAuthenticationError, ProbeError

# The exceptions live in the native module; users meet them here.
for _error in (ProbeError, ProbeAuthenticationError):
    _error.__module__ = "exogpu.netprobe"
del _error

TOKEN_ENV = "EXOGPU_PROBE_TOKEN"
DEFAULT_PORT = 5310

__all__ = [
    "DEFAULT_PORT",
    "TOKEN_ENV",
    "NetResult",
    "ProbeAuthenticationError",
    "ProbeError",
    "RttStats",
    "Server",
    "ServerStats",
    "UdpStats",
    "measure",
    "new_token",
    "parse_endpoint",
]


def new_token() -> str:
    """A fresh random token (192 bits, URL-safe text)."""
    return secrets.token_urlsafe(24)


def parse_endpoint(text: str, default_port: int | None = None) -> tuple[str, int]:
    """Split ``host:port``; IPv6 literals go in brackets (``[::1]:5310``).

    Without a port, ``default_port`` is used when given. Raises
    ``exogpu.InvalidArgument`` (a ``ValueError``) naming what was wrong.
    """
    text = text.strip()
    if not text:
        raise InvalidArgument("empty endpoint: expected HOST:PORT")
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise InvalidArgument(f"endpoint {text!r}: missing ']' after the IPv6 address")
        host, rest = text[1:close], text[close + 1 :]
        if rest and not rest.startswith(":"):
            raise InvalidArgument(f"endpoint {text!r}: expected ':PORT' after ']'")
        port_text = rest[1:] if rest else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        raise InvalidArgument(
            f"endpoint {text!r}: put an IPv6 address in brackets, as in [::1]:5310"
        )
    else:
        host, port_text = text, ""
    if not host:
        raise InvalidArgument(f"endpoint {text!r}: missing host")
    if not port_text:
        if default_port is None:
            raise InvalidArgument(f"endpoint {text!r}: missing port, expected HOST:PORT")
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise InvalidArgument(f"endpoint {text!r}: port must be a number from 1 to 65535")
    return host, int(port_text)


@dataclass(frozen=True)
class RttStats:
    """Round-trip times of the TCP ping-pong, in microseconds."""

    median: float
    p99: float
    min: float
    max: float
    mean: float
    samples: int


@dataclass(frozen=True)
class UdpStats:
    """The UDP test: what was sent, what arrived, how it arrived."""

    sent: int
    received: int
    lost: int
    reordered: int
    duplicates: int
    loss: float
    jitter_us: float
    rate_bps: float
    achieved_rate_bps: float
    packet_size: int
    seconds: float


@dataclass(frozen=True)
class NetResult:
    """What one run of the probe measured. Absent tests are ``None``."""

    host: str
    address: str
    port: int
    streams: int
    seconds: float
    bandwidth_bps: float | None
    bulk_bytes: int
    bulk_elapsed_seconds: float
    retransmits: int | None
    rtt: RttStats | None
    udp: UdpStats | None

    @classmethod
    def from_native(cls, raw: dict[str, Any]) -> NetResult:
        rtt = raw["rtt"]
        udp = raw["udp"]
        return cls(
            host=raw["host"],
            address=raw["address"],
            port=raw["port"],
            streams=raw["streams"],
            seconds=raw["seconds"],
            bandwidth_bps=raw["bandwidth_bps"],
            bulk_bytes=raw["bulk_bytes"],
            bulk_elapsed_seconds=raw["bulk_elapsed_seconds"],
            retransmits=raw["retransmits"],
            rtt=RttStats(**rtt) if rtt is not None else None,
            udp=UdpStats(**udp) if udp is not None else None,
        )

    @property
    def jitter_us(self) -> float | None:
        return self.udp.jitter_us if self.udp else None

    @property
    def udp_loss(self) -> float | None:
        return self.udp.loss if self.udp else None

    @property
    def bandwidth_bytes_per_second(self) -> float | None:
        """Throughput in bytes per second, the unit of a placement problem."""
        return self.bandwidth_bps / 8.0 if self.bandwidth_bps is not None else None

    @property
    def one_way_latency_seconds(self) -> float | None:
        """Half the median round trip, in seconds: a placement link's latency."""
        return self.rtt.median / 2e6 if self.rtt else None

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document: ``bandwidth_bps`` (bits/s), ``streams``,
        ``seconds``, ``rtt_us`` (``median``, ``p99``, ``min``), ``jitter_us``,
        ``udp_loss`` (a fraction), and ``retransmits`` only where the OS
        reports them; details under ``rtt``, ``udp`` and ``bulk``."""
        out: dict[str, Any] = {
            "host": self.host,
            "address": self.address,
            "port": self.port,
            "bandwidth_bps": self.bandwidth_bps,
            "streams": self.streams,
            "seconds": self.seconds,
            "rtt_us": (
                {"median": self.rtt.median, "p99": self.rtt.p99, "min": self.rtt.min}
                if self.rtt
                else None
            ),
            "jitter_us": self.jitter_us,
            "udp_loss": self.udp_loss,
        }
        if self.retransmits is not None:
            out["retransmits"] = self.retransmits
        out["bulk"] = {"bytes": self.bulk_bytes, "elapsed_seconds": self.bulk_elapsed_seconds}
        out["rtt"] = vars(self.rtt).copy() if self.rtt else None
        out["udp"] = vars(self.udp).copy() if self.udp else None
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> NetResult:
        """The inverse of :meth:`to_dict` (e.g. a result measured by a node
        agent). Raises ``ValueError`` naming the field that is missing."""
        try:
            rtt, udp, bulk = doc["rtt"], doc["udp"], doc["bulk"]
            return cls(
                host=str(doc["host"]),
                address=str(doc["address"]),
                port=int(doc["port"]),
                streams=int(doc["streams"]),
                seconds=float(doc["seconds"]),
                bandwidth_bps=doc["bandwidth_bps"],
                bulk_bytes=int(bulk["bytes"]),
                bulk_elapsed_seconds=float(bulk["elapsed_seconds"]),
                retransmits=doc.get("retransmits"),
                rtt=RttStats(**rtt) if rtt is not None else None,
                udp=UdpStats(**udp) if udp is not None else None,
            )
        except KeyError as exc:
            raise ValueError(f"network-probe result without {exc.args[0]!r}") from None
        except TypeError as exc:  # rtt/udp with missing or unknown fields
            raise ValueError(f"malformed network-probe result: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> NetResult:
        """The inverse of :meth:`to_json`."""
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError("a network-probe result is a JSON object")
        return cls.from_dict(doc)


def measure(
    host: str,
    port: int,
    token: str,
    *,
    seconds: float = 3.0,
    streams: int = 1,
    udp_rate: float = 10e6,
    udp_packet_size: int = 1200,
    rtt_seconds: float = 1.0,
    rtt_samples: int = 1000,
    connect_timeout: float = 5.0,
    socket_buffer: int = 0,
) -> NetResult:
    """Run the probe against ``host:port``; blocks for about
    ``rtt_seconds + 2 * seconds`` without holding the GIL.

    ``streams=0`` skips the bulk test, ``udp_rate=0`` the UDP test and
    ``rtt_seconds=0`` the ping-pong. ``socket_buffer=0`` keeps the kernel's
    buffer autotuning. Raises ``exogpu.InvalidArgument`` for bad arguments,
    :data:`ProbeAuthenticationError` when the token is refused and
    :data:`ProbeError` when the test cannot run.
    """
    raw = _core.net_probe(
        host,
        port,
        token,
        seconds,
        streams,
        udp_rate,
        udp_packet_size,
        rtt_seconds,
        rtt_samples,
        connect_timeout,
        socket_buffer,
    )
    return NetResult.from_native(raw)


@dataclass(frozen=True)
class ServerStats:
    connections_accepted: int
    sessions_started: int
    sessions_completed: int
    auth_failures: int
    protocol_errors: int
    rejected_busy: int
    datagrams_ignored: int
    active_connections: int
    active_sessions: int
    peak_connections: int


class Server:
    """A probe server on native threads; ``close()`` or ``with`` stops it.

    ``token`` defaults to ``$EXOGPU_PROBE_TOKEN``, else a fresh random one
    (read it from :attr:`token`). ``bind=""`` listens on every address, IPv6
    and IPv4; ``port=0`` lets the OS choose (read it from :attr:`port`).
    """

    def __init__(
        self,
        bind: str = "",
        port: int = DEFAULT_PORT,
        token: str | None = None,
        *,
        max_sessions: int = 4,
        max_connections: int = 64,
        max_streams: int = 16,
        max_test_seconds: float = 60.0,
        max_test_bytes: int = 1 << 40,
        max_udp_rate: float = 10e9,
        handshake_timeout: float = 5.0,
        idle_timeout: float = 30.0,
    ) -> None:
        self.token: str = token or os.environ.get(TOKEN_ENV) or new_token()
        self._native = _core.NetProbeServer(
            bind,
            port,
            self.token,
            max_sessions,
            max_connections,
            max_streams,
            max_test_seconds,
            max_test_bytes,
            max_udp_rate,
            handshake_timeout,
            idle_timeout,
        )

    @property
    def port(self) -> int:
        return self._native.port

    @property
    def address(self) -> str:
        return self._native.address

    @property
    def running(self) -> bool:
        return self._native.running

    def stats(self) -> ServerStats:
        return ServerStats(**self._native.stats())

    def close(self) -> None:
        """Stop accepting, cut every connection, join every thread. Idempotent."""
        self._native.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "closed"
        return f"<exogpu.netprobe.Server {self.address} port {self.port} {state}>"
