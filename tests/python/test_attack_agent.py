"""The agent under attack, from real clients on loopback: raw sockets, TLS without
a certificate, dribbled headers, garbage the HTTP parser refuses, hostile JSON,
a descriptor-exhausting flood. It keeps serving valid clients, audits every
refusal with the peer's address (and the subject once known), and never answers
a hostile body with a 500."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exogpu.agent import AgentClient, AgentConfig, AgentThread
from exogpu.agent.gate import Limits
from exogpu.security.tls import client_context, init_certs

POLICY = """
[[principals]]
name = "root"
roles = ["admin"]
devices = ["*"]

[[principals]]
name = "alice"
roles = ["user"]
devices = ["*"]
"""
LIMITS = Limits(max_connections=24, max_per_peer=6, new_per_peer_per_second=1000,
                handshake_timeout=1.5, header_timeout=1.5)


@dataclass
class Env:
    root: Path
    agent: AgentThread

    @property
    def port(self) -> int:
        assert self.agent.agent.port is not None
        return self.agent.agent.port

    def client(self, name: str = "alice") -> AgentClient:
        return AgentClient(self.root / "certs", name, "node-a", self.port, timeout=10)

    def records(self) -> list[dict[str, Any]]:
        self.agent.agent.audit.flush()
        return [json.loads(x) for x in (self.root / "audit.log").read_text().splitlines()]

    def refusals(self, kind: str) -> list[dict[str, Any]]:
        self.agent.call(_flush(self.agent))
        return [r for r in self.records() if r["details"].get("refused") == kind]

    def tls(self, source: str = "127.0.0.1", name: str | None = "alice") -> ssl.SSLSocket:
        certs = self.root / "certs"
        if name is None:
            ctx = ssl.create_default_context(cafile=certs / "ca.pem")
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        else:
            ctx = client_context(certs / f"{name}.pem", certs / f"{name}.key", certs / "ca.pem")
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=10,
                                       source_address=(source, 0))
        return ctx.wrap_socket(raw, server_hostname="node-a")


async def _flush(agent: AgentThread) -> None:
    agent.agent.refusals.flush()  # write the counted refusals of open windows now
    while agent.agent._background:
        import asyncio
        await asyncio.gather(*list(agent.agent._background), return_exceptions=True)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    init_certs(tmp_path / "certs", ["node-a", "root", "alice"])
    (tmp_path / "policy.toml").write_text(POLICY)
    config = AgentConfig(certs=tmp_path / "certs", node="node-a",
                         policy=tmp_path / "policy.toml", audit_log=tmp_path / "audit.log",
                         reload_interval=3600, limits=LIMITS, refusal_window=0.5)
    with AgentThread(config) as agent:
        yield Env(tmp_path, agent)


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes (EOF or reset) within `within` seconds."""
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True


def test_caps_per_peer_and_in_total(env: Env) -> None:
    held = [socket.create_connection(("127.0.0.1", env.port), source_address=("127.0.0.2", 0))
            for _ in range(LIMITS.max_per_peer)]
    try:
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", env.port),
                                         source_address=("127.0.0.2", 0))
        assert closed_by_server(extra, 1.0)  # refused at once, long before the handshake
        extra.close()
        with env.client() as c:  # another peer is still served
            assert c.backends()
        for i in range(3, 3 + (LIMITS.max_connections - LIMITS.max_per_peer)
                       // LIMITS.max_per_peer):
            held += [socket.create_connection(("127.0.0.1", env.port),
                                              source_address=(f"127.0.0.{i}", 0))
                     for _ in range(LIMITS.max_per_peer)]
        time.sleep(0.2)
        assert env.agent.agent._gates is not None
        assert env.agent.agent._gates.open == LIMITS.max_connections
        late = socket.create_connection(("127.0.0.1", env.port), source_address=("127.0.0.9", 0))
        assert closed_by_server(late, 1.0)  # the total cap
        late.close()
    finally:
        for s in held:
            s.close()
    caps = env.refusals("connection_cap")
    assert {r["details"]["remote"] for r in caps} == {"127.0.0.2", "127.0.0.9"}
    assert any("from this peer" in r["details"]["reason"] for r in caps)
    assert any("connections open, the limit is 24" in r["details"]["reason"] for r in caps)


def test_a_peer_reconnecting_without_end_is_turned_away_before_tls(tmp_path: Path) -> None:
    init_certs(tmp_path / "certs", ["node-a", "alice"])
    (tmp_path / "policy.toml").write_text(POLICY)
    limits = Limits(max_per_peer=5, new_per_peer_per_second=2)
    config = AgentConfig(certs=tmp_path / "certs", node="node-a",
                         policy=tmp_path / "policy.toml", audit_log=tmp_path / "audit.log",
                         limits=limits, refusal_window=0.2)
    with AgentThread(config) as agent:
        env = Env(tmp_path, agent)
        for _ in range(12):  # one at a time, never more than one open: no cap applies
            socket.create_connection(("127.0.0.1", env.port),
                                     source_address=("127.0.0.8", 0)).close()
        with env.client() as c:  # another address is not limited by this one
            assert c.backends()
        rate = env.refusals("connection_rate")
    refused = sum(r["details"]["count"] for r in rate)
    assert 12 - 5 - 2 <= refused <= 12 - 5  # all but the burst (and a token or two refilled)
    assert {r["details"]["remote"] for r in rate} == {"127.0.0.8"}
    assert all("new connections a second" in r["details"]["reason"] for r in rate)


def test_silent_connections_are_cut_at_the_handshake_deadline(env: Env) -> None:
    silent = socket.create_connection(("127.0.0.1", env.port), source_address=("127.0.0.3", 0))
    partial = socket.create_connection(("127.0.0.1", env.port),
                                       source_address=("127.0.0.3", 0))
    partial.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello's start
    assert closed_by_server(silent, LIMITS.handshake_timeout + 5)
    assert closed_by_server(partial, 5)
    silent.close()
    partial.close()
    deadline = time.monotonic() + 5
    while True:
        cut = [r for r in env.refusals("tls_handshake") if r["details"]["remote"] == "127.0.0.3"]
        if sum(r["details"]["count"] for r in cut) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert sum(r["details"]["count"] for r in cut) == 2
    assert {r["details"]["reason"] for r in cut} == {"handshake timeout"}


def test_dribbled_headers_are_cut_at_the_header_deadline(env: Env) -> None:
    tls = env.tls("127.0.0.4")
    tls.sendall(b"GET /v1/backends HTTP/1.1\r\nHost: node-a\r\n")
    start = time.monotonic()
    cut = False
    while time.monotonic() - start < LIMITS.header_timeout + 5:
        try:
            tls.sendall(b"X-Slow: 1\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            cut = True
            break
        if closed_by_server(tls, 0.3):
            cut = True
            break
    tls.close()
    assert cut
    with env.client() as c:  # the next client is fine
        assert c.backends()
    records = env.refusals("header_deadline")
    assert len(records) == 1
    assert records[0]["details"]["remote"] == "127.0.0.4"
    assert records[0]["details"]["subject"] == "commonName=alice"


@pytest.mark.parametrize("garbage", [
    b"\x00\x01\x02 nonsense\r\n\r\n",
    b"GET /v1/backends HTTP/1.1\r\nHost: node-a\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
    b"GET /v1/backends HTTP/9.9\r\n\r\n",
    b"POST /v1/policy HTTP/1.1\r\nHost: n\r\nContent-Length: -1\r\n\r\n",
])
def test_parser_refusals_are_audited_with_peer_and_subject(
    env: Env, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with env.tls("127.0.0.5") as tls:
        tls.sendall(garbage)
        reply = b""
        tls.settimeout(5)
        try:
            while chunk := tls.recv(65536):
                reply += chunk
        except (ConnectionResetError, ssl.SSLError):
            pass
    head, _, body = reply.partition(b"\r\n\r\n")
    assert re.match(rb"HTTP/1\.[01] 4\d\d ", head), reply[:200]
    assert "error" in json.loads(body)  # JSON naming the fault, not an HTML page
    records = env.refusals("http_parser")
    assert len(records) == 1
    assert records[0]["details"]["remote"] == "127.0.0.5"
    assert records[0]["details"]["subject"] == "commonName=alice"
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


def test_openssl_s_client_garbage_gets_a_400(env: Env) -> None:
    if not shutil.which("openssl"):
        pytest.skip("needs openssl")
    certs = env.root / "certs"
    out = subprocess.run(
        ["openssl", "s_client", "-tls1_3", "-connect", f"127.0.0.1:{env.port}",
         "-servername", "node-a", "-CAfile", str(certs / "ca.pem"),
         "-cert", str(certs / "alice.pem"), "-key", str(certs / "alice.key"), "-ign_eof",
         "-quiet"],
        input="BREW /coffee HTCPCP/1.0\r\n\r\n", capture_output=True, text=True, timeout=20,
        check=False)
    assert re.match(r"HTTP/1\.[01] 400 ", out.stdout), out.stdout + out.stderr
    assert env.refusals("http_parser")


HOSTILE_BODIES = [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    b'{"target": "127.0.0.1:1", "token": "t", "seconds": ' + b"9" * 5000 + b"}",
    b'{"target": "127.0.0.1:1", "token": "t", "seconds": 1e999}',
    b'{"target": "127.0.0.1:1", "token": "t", "seconds": NaN}',
    b"\xff\xfe\x00",
    b"",
    b"null",
    b'"' + b"\\u0000" * 1000 + b'"',
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20,
)


def _post(client: AgentClient, body: bytes) -> int:
    status, data, _ = client.request("POST", "/v1/probe/network/measure", body,
                                     {"Content-Type": "application/json"})
    if 400 <= status < 500:
        assert "error" in json.loads(data), data[:200]
    return status


def test_hostile_json_bodies_are_typed_4xx(env: Env) -> None:
    with env.client("root") as c:
        for body in HOSTILE_BODIES:
            assert _post(c, body) == 400, body[:60]
        for param in ("after=" + "9" * 5000, "limit=" + "1" * 5000, "since=" + "[" * 3000):
            status, _, _ = c.request("GET", "/v1/audit?" + param)
            assert status == 400, param[:30]
    assert env.agent.agent.errors == 0


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values, raw=st.binary(max_size=64))
def test_any_json_or_bytes_is_never_a_500(env: Env, value: Any, raw: bytes) -> None:
    with env.client("root") as c:
        for body in (json.dumps(value).encode(), raw):
            status = _post(c, body)
            assert status < 500 or status == 502, (status, body[:80])  # 502: probe failed
    assert env.agent.agent.errors == 0


def _no_cert_flood(env: Env, stop: threading.Event, made: list[int]) -> None:
    while not stop.is_set():
        try:
            with env.tls("127.0.0.6", name=None) as tls:
                tls.sendall(b"GET /v1/backends HTTP/1.1\r\nHost: node-a\r\n\r\n")
                tls.recv(100)
        except (OSError, ssl.SSLError):
            pass
        made[0] += 1


def test_valid_clients_are_served_through_a_flood(env: Env) -> None:
    stop = threading.Event()
    made = [0]
    flood = [threading.Thread(target=_no_cert_flood, args=(env, stop, made)) for _ in range(3)]
    silent = [socket.create_connection(("127.0.0.1", env.port),
                                       source_address=("127.0.0.7", 0))
              for _ in range(LIMITS.max_per_peer)]
    served, failed = [0], []

    def valid() -> None:
        with env.client() as c:
            while not stop.is_set():
                try:
                    c.backends()
                    served[0] += 1
                except Exception as exc:  # any failure of a valid client fails the test
                    failed.append(exc)

    clients = [threading.Thread(target=valid) for _ in range(4)]
    for t in flood + clients:
        t.start()
    time.sleep(4)
    stop.set()
    for t in flood + clients:
        t.join(30)
    for s in silent:
        s.close()
    assert not failed, failed[:3]
    assert served[0] > 0 and made[0] > 0
    env.agent.call(_flush(env.agent))
    time.sleep(0.5)  # the refusals of the silent ones close with their handshake deadline
    env.agent.call(_flush(env.agent))
    agent = env.agent.agent
    recs = env.records()
    refused = sum(r["details"]["count"] for r in recs if r["details"].get("refused"))
    assert refused == agent.refusals.total  # every refusal accounted for in the log
    no_cert = sum(r["details"]["count"] for r in recs
                  if r["details"].get("refused") in ("tls_handshake", "connection_cap",
                                                     "connection_rate")
                  and r["details"]["remote"] == "127.0.0.6")
    assert no_cert == made[0]  # each attempt of the flood is in the log
    ok = sum(r["type"] == "system.api_request" and r["outcome"] == "success" for r in recs)
    assert ok == served[0]
    assert agent.audit.dropped == 0


def test_accept_out_of_descriptors_backs_off_quietly(tmp_path: Path) -> None:
    init_certs(tmp_path / "certs", ["node-a", "root"])
    (tmp_path / "policy.toml").write_text(POLICY)
    log = tmp_path / "audit.log"

    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))

    env = dict(os.environ)  # the exogpu under test, installed or on PYTHONPATH
    proc = subprocess.Popen(
        [sys.executable, "-m", "exogpu", "agent", "--certs", str(tmp_path / "certs"),
         "--node", "node-a", "--port", "0", "--policy", str(tmp_path / "policy.toml"),
         "--audit-log", str(log), "--max-connections", "1000", "--max-per-peer", "1000",
         "--handshake-timeout", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=few_descriptors)
    flood: list[socket.socket] = []
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        m = re.search(r"listening on https://127\.0\.0\.1:(\d+)", line)
        assert m, line + proc.stderr.read()
        port = int(m.group(1))
        for _ in range(200):  # far more than the agent has descriptors for
            flood.append(socket.create_connection(("127.0.0.1", port)))
        time.sleep(4)  # accept() fails, backs off, retries: several times
        assert proc.poll() is None
        for s in flood:
            s.close()
        flood.clear()
        deadline = time.monotonic() + 30
        while True:  # served again once the flood is gone
            try:
                with AgentClient(tmp_path / "certs", "root", "node-a", port, timeout=5) as c:
                    metrics = c.metrics()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.5)
        exhausted = re.search(r"^exogpu_agent_accept_exhausted_total (\S+)$", metrics, re.M)
        # a back-off: a handful of failed accepts, not one storm per wake-up
        # (asyncio's own accept loop made tens of thousands in the same time)
        assert exhausted and 2 <= float(exhausted.group(1)) <= 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        stderr = proc.stderr.read()
    finally:
        for s in flood:
            s.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    lines = [x for x in stderr.splitlines() if "out of file descriptors" in x]
    assert len(lines) == 1, stderr[-2000:]  # one line, not one per failure
    assert "Traceback" not in stderr
    assert len(stderr) < 20_000
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert recs[-1]["type"] == "system.stop"


@pytest.mark.parametrize(("field", "value", "message"), [
    ("new_per_peer_per_second", 0.0, "more than 0 and under 1000000"),
    ("new_per_peer_per_second", float("nan"), "more than 0 and under 1000000"),
    ("new_per_peer_per_second", 1e7, "more than 0 and under 1000000"),
    ("handshake_timeout", float("inf"), "more than 0 and under a day"),
    ("max_per_peer", 0, "at least 1"),
])
def test_limits_refuse_nonsense_naming_the_field(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must be {message}"):
        Limits(**{field: value})  # type: ignore[arg-type]
