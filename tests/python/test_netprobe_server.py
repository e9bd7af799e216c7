"""The probe server under hostile input: garbage, truncated and oversized
frames, forged data streams and UDP, connection floods. Each is rejected,
stays bounded, and the server goes on serving honest clients."""

from __future__ import annotations

import random
import socket
import struct
import time
from collections.abc import Callable, Iterator

import pytest

from exogpu import netprobe

HELLO_MAGIC = b"EXNP"


def frame(kind: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", kind, 0, len(payload)) + payload


def control_hello(token: bytes, version: int = 1) -> bytes:
    return frame(1, HELLO_MAGIC + struct.pack(">HHH", version, 1, len(token)) + token)


def eventually(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def exchange(port: int, data: bytes, timeout: float = 3.0) -> bytes:
    """Sends `data`, returns everything the server says before it closes."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(timeout)
        s.sendall(data)
        chunks = []
        while chunk := s.recv(4096):
            chunks.append(chunk)
        return b"".join(chunks)


def error_text(reply: bytes) -> str:
    kind, _, _length = struct.unpack(">HHI", reply[:8])
    assert kind == 3, f"expected an ERROR frame, got type {kind}"
    (text_len,) = struct.unpack(">H", reply[10:12])
    return reply[12 : 12 + text_len].decode()


@pytest.fixture
def server() -> Iterator[netprobe.Server]:
    with netprobe.Server(bind="127.0.0.1", port=0, handshake_timeout=0.5,
                         max_connections=8) as s:
        yield s


def still_serves(server: netprobe.Server) -> bool:
    r = netprobe.measure("127.0.0.1", server.port, server.token, seconds=0.2, streams=1,
                         udp_rate=1e6, rtt_seconds=0.05)
    return r.bandwidth_bps is not None and r.udp is not None and r.udp.received > 0


def test_wrong_token_and_wrong_version_are_answered_and_closed(server: netprobe.Server) -> None:
    token = server.token.encode()
    assert error_text(exchange(server.port, control_hello(token[:-1] + b"?"))) == "token rejected"
    assert error_text(exchange(server.port, control_hello(b""))) == "token rejected"
    assert "version 9 not supported" in error_text(exchange(server.port,
                                                            control_hello(token, version=9)))
    stats = server.stats()
    assert stats.auth_failures == 2 and stats.protocol_errors == 1
    assert stats.sessions_started == 0
    assert still_serves(server)


def test_truncated_oversized_and_garbage_frames(server: netprobe.Server) -> None:
    token = server.token.encode()
    hello = control_hello(token)
    cases = [
        hello[:5],                                       # cut inside the header
        hello[:-3],                                      # cut inside the token
        frame(1, HELLO_MAGIC + struct.pack(">HHH", 1, 1, 200) + b"ab"),  # length lies
        struct.pack(">HHI", 1, 0, 0xFFFFFFFF),           # 4 GiB payload announced
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        frame(10, b"12345678"),                          # PING before HELLO
        frame(1, b"NOPE" + hello[12:]),                  # wrong magic
    ]
    start = time.monotonic()
    for data in cases:
        exchange(server.port, data)  # the server closes each; none hangs
    assert time.monotonic() - start < 6
    assert eventually(lambda: server.stats().protocol_errors == len(cases))
    assert server.stats().active_connections == 0
    assert still_serves(server)


def test_random_bytes_never_get_a_session(server: netprobe.Server) -> None:
    rng = random.Random(1234)
    for _ in range(40):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        exchange(server.port, data, timeout=2)
    assert eventually(lambda: server.stats().active_connections == 0)
    assert server.stats().sessions_started == 0
    assert still_serves(server)


def test_forged_data_streams_and_datagrams_are_refused(server: netprobe.Server) -> None:
    forged = frame(1, HELLO_MAGIC + struct.pack(">HHI", 1, 2, 12345) + bytes(16) +
                   struct.pack(">H", 0))
    assert error_text(exchange(server.port, forged)) == "unknown session"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        for i in range(50):
            u.sendto(struct.pack(">IIQQQ", 0x45584E55, 12345, 1, i, 0), ("127.0.0.1", server.port))
        u.sendto(b"short", ("127.0.0.1", server.port))
    assert eventually(lambda: server.stats().datagrams_ignored == 51)
    assert still_serves(server)


def test_connection_flood_is_bounded_then_serving_resumes(server: netprobe.Server) -> None:
    flood = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(100)]
    try:
        assert eventually(lambda: server.stats().connections_accepted == 100)
        stats = server.stats()
        assert stats.peak_connections == 8  # max_connections
        assert stats.rejected_busy == 92
        # The held ones are cut by the handshake timeout (0.5 s) without help.
        assert eventually(lambda: server.stats().active_connections == 0, timeout=3)
    finally:
        for s in flood:
            s.close()
    assert still_serves(server)


def test_a_client_that_vanishes_mid_test_frees_its_session(server: netprobe.Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(control_hello(server.token.encode()))
        s.settimeout(3)
        welcome = s.recv(4096)
        assert struct.unpack(">H", welcome[:2])[0] == 2  # WELCOME
        s.sendall(frame(20, struct.pack(">Hd", 2, 0.5)))  # BULK_START, 2 streams
        assert struct.unpack(">H", s.recv(4096)[:2])[0] == 4  # OK
        assert server.stats().active_sessions == 1
    # Gone without a word: the session ends and its slot is free again.
    assert eventually(lambda: server.stats().active_sessions == 0)
    assert server.stats().sessions_completed == 0
    assert still_serves(server)


def test_session_limit_turns_away_extra_clients() -> None:
    with netprobe.Server(bind="127.0.0.1", port=0, max_sessions=1) as s:
        with socket.create_connection(("127.0.0.1", s.port)) as first:
            first.sendall(control_hello(s.token.encode()))
            first.settimeout(3)
            assert struct.unpack(">H", first.recv(4096)[:2])[0] == 2
            with pytest.raises(netprobe.ProbeError, match="server busy"):
                netprobe.measure("127.0.0.1", s.port, s.token, seconds=0.1)
        assert eventually(lambda: s.stats().active_sessions == 0)
        assert still_serves(s)
