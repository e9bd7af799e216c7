"""Test network labs: two network namespaces joined by a veth pair (shaped
with tc tbf), and a userspace impairment relay that delays TCP and UDP and
drops or reorders datagrams, since the kernels here have no netem."""

from __future__ import annotations

import collections
import os
import random
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def netns_unavailable_reason() -> str | None:
    """Why namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "iproute2 (ip, tc) is not installed"
    probe = f"exnp{uuid.uuid4().hex[:8]}"
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError as e:
        return f"`ip netns add` failed: {e.stderr.strip()}"
    _ip("netns", "del", probe)
    return None


@dataclass(frozen=True)
class VethLab:
    """Namespaces `server_ns` (address `server_ip`) and `client_ns`
    (`client_ip`), joined by veth devices `server_dev` and `client_dev`."""

    server_ns: str
    client_ns: str
    server_dev: str
    client_dev: str
    server_ip: str = "10.77.0.1"
    client_ip: str = "10.77.0.2"

    def shape(self, dev_ns: str, dev: str, rate: str, burst: str = "256kb",
              latency: str = "100ms") -> None:
        """Token-bucket-limit the egress of `dev` in namespace `dev_ns`."""
        subprocess.run(
            ["tc", "-n", dev_ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate,
             "burst", burst, "latency", latency],
            check=True, capture_output=True, text=True,
        )

    def popen(self, ns: str, argv: list[str], **kwargs: object) -> subprocess.Popen[str]:
        return subprocess.Popen(["ip", "netns", "exec", ns, *argv], text=True, **kwargs)  # type: ignore[call-overload]

    def run(self, ns: str, argv: list[str], timeout: float, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                              timeout=timeout, env=env)


@contextmanager
def veth_lab() -> Iterator[VethLab]:
    """Creates uniquely named namespaces and a veth pair; removes them on exit,
    whatever happened inside."""
    tag = uuid.uuid4().hex[:6]
    lab = VethLab(f"exnp{tag}s", f"exnp{tag}c", f"exs{tag}", f"exc{tag}")
    created: list[str] = []
    try:
        for ns in (lab.server_ns, lab.client_ns):
            _ip("netns", "add", ns)
            created.append(ns)
        _ip("link", "add", lab.server_dev, "type", "veth", "peer", "name", lab.client_dev)
        _ip("link", "set", lab.server_dev, "netns", lab.server_ns)
        _ip("link", "set", lab.client_dev, "netns", lab.client_ns)
        for ns, dev, ip in ((lab.server_ns, lab.server_dev, lab.server_ip),
                            (lab.client_ns, lab.client_dev, lab.client_ip)):
            _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield lab
    finally:
        # Deleting a namespace deletes the veth end inside it, and its peer.
        for ns in created:
            with suppress(subprocess.CalledProcessError):
                _ip("netns", "del", ns)
        with suppress(subprocess.CalledProcessError):
            _ip("link", "del", lab.server_dev)


# Linux's "beyond rmem_max/wmem_max" options (root only); Python lacks names.
_SO_SNDBUFFORCE = 32
_SO_RCVBUFFORCE = 33


def _set_buffer(sock: socket.socket, forced: int, plain: int, size: int) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, forced, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, plain, size)


class _DelayLine:
    """A FIFO that releases each item `delay` seconds after it was put in,
    from its own thread; constant delay keeps the order."""

    def __init__(self, delay: float, emit: collections.abc.Callable[[bytes], None]) -> None:
        self._delay = delay
        self._emit = emit
        self._queue: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def put(self, data: bytes | None) -> None:
        """Queue `data`; None queues the end (emitted as b"" in order)."""
        with self._cv:
            self._queue.append((time.monotonic() + self._delay, data))
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                due, data = self._queue[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cv.wait(wait)
                    continue
                self._queue.popleft()
            try:
                self._emit(b"" if data is None else data)
            except OSError:
                return
            if data is None:
                return

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class ImpairmentRelay:
    """Forwards TCP and UDP from `port` (both protocols, one number) on
    127.0.0.1 to `target`. TCP: `delay` seconds added in each direction.
    UDP (client to server only, which is all the probe sends): `delay` added,
    a `drop` fraction dropped and a `reorder` fraction held back behind the
    next datagram, chosen by a seeded generator. Counts what it did."""

    def __init__(self, target: tuple[str, int], delay: float = 0.02, drop: float = 0.0,
                 reorder: float = 0.0, seed: int = 7) -> None:
        self.target = target
        self.delay = delay
        self.drop = drop
        self.reorder = reorder
        self._random = random.Random(seed)
        self.udp_forwarded = 0
        self.udp_dropped = 0
        self.udp_reordered = 0
        self._stop = threading.Event()
        self._tcp = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._tcp.getsockname()[1]
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # Room for a long backlog, so the relay's own lag never drops anything.
        _set_buffer(self._udp, _SO_RCVBUFFORCE, socket.SO_RCVBUF, 64 << 20)
        self._udp.bind(("127.0.0.1", self.port))
        self._udp.settimeout(0.2)
        self._tcp.settimeout(0.2)
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True),
                         threading.Thread(target=self._udp_loop, daemon=True)]
        for t in self._threads:
            t.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(self.target)
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._sockets.append(s)
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        def emit(data: bytes) -> None:
            if data:
                dst.sendall(data)
            else:
                with suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)

        line = _DelayLine(self.delay, emit)
        while True:
            try:
                data = src.recv(1 << 16)
            except OSError:
                data = b""
            line.put(data or None)
            if not data:
                return

    def _udp_loop(self) -> None:
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        _set_buffer(out, _SO_SNDBUFFORCE, socket.SO_SNDBUF, 16 << 20)
        out.connect(self.target)
        line = _DelayLine(self.delay, out.send)
        held: bytes | None = None
        while not self._stop.is_set():
            try:
                data = self._udp.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                return
            if self._random.random() < self.drop:
                self.udp_dropped += 1
                continue
            if held is None and self._random.random() < self.reorder:
                held = data  # goes out right after the next datagram
                continue
            line.put(data)
            self.udp_forwarded += 1
            if held is not None:
                line.put(held)
                self.udp_forwarded += 1
                self.udp_reordered += 1
                held = None

    def close(self) -> None:
        self._stop.set()
        for s in [self._tcp, self._udp, *self._sockets]:
            with suppress(OSError):
                s.close()
        for t in self._threads:
            t.join(2)

    def __enter__(self) -> ImpairmentRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
