"""Real TLS clients (openssl s_client, curl) against a running agent: who gets in,
who is refused, and certificate rotation while it runs."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from exogpu.agent import AgentClient, AgentConfig, AgentThread
from exogpu.security.tls import (
    client_context,
    init_certs,
    issue_node_certificate,
    load_ca,
    make_ca,
    spki_pin,
    write_key,
    write_pem,
)

pytestmark = pytest.mark.skipif(not (shutil.which("openssl") and shutil.which("curl")),
                                reason="needs openssl and curl")

POLICY = """
[[principals]]
name = "alice"
roles = ["user"]
devices = ["*"]
"""


@dataclass
class Env:
    certs: Path
    other: Path   # a different CA's "alice"
    expired: Path  # an expired "alice" from the right CA
    agent: AgentThread
    seen_failures: int = 0

    @property
    def port(self) -> int:
        assert self.agent.agent.port is not None
        return self.agent.agent.port

    def pin(self) -> str:
        return spki_pin(x509.load_pem_x509_certificate((self.certs / "node-a.pem").read_bytes()))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("agent-tls")
    certs = root / "certs"
    init_certs(certs, ["node-a", "alice"])
    other = root / "other"
    other.mkdir()
    rogue_ca = make_ca("rogue CA")
    cert, key = issue_node_certificate(rogue_ca, "alice")
    write_pem(other / "alice.pem", cert)
    write_key(other / "alice.key", key)
    expired = root / "expired"
    expired.mkdir()
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)
    cert, key = issue_node_certificate(load_ca(certs), "alice", days=1, not_before=past)
    write_pem(expired / "alice.pem", cert)
    write_key(expired / "alice.key", key)
    (root / "policy.toml").write_text(POLICY)
    config = AgentConfig(certs=certs, node="node-a", policy=root / "policy.toml",
                         audit_log=root / "audit.log", reload_interval=3600)
    with AgentThread(config) as agent:
        yield Env(certs, other, expired, agent)


def curl(env: Env, *extra: str, cert_dir: Path | None = None,
         path: str = "/v1/devices") -> subprocess.CompletedProcess[str]:
    cmd = ["curl", "-sS", "--max-time", "10", "--cacert", str(env.certs / "ca.pem"),
           "--resolve", f"node-a:{env.port}:127.0.0.1"]
    if cert_dir is not None:
        cmd += ["--cert", str(cert_dir / "alice.pem"), "--key", str(cert_dir / "alice.key")]
    cmd += [*extra, f"https://node-a:{env.port}{path}"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)


def s_client(env: Env, *extra: str, cert_dir: Path | None = None,
             version: str = "-tls1_3") -> subprocess.CompletedProcess[str]:
    cmd = ["openssl", "s_client", version, "-connect", f"127.0.0.1:{env.port}",
           "-servername", "node-a", "-CAfile", str(env.certs / "ca.pem"),
           "-verify_return_error", "-ign_eof"]
    if cert_dir is not None:
        cmd += ["-cert", str(cert_dir / "alice.pem"), "-key", str(cert_dir / "alice.key")]
    request = "GET /v1/devices HTTP/1.1\r\nHost: node-a\r\nConnection: close\r\n\r\n"
    return subprocess.run([*cmd, *extra], input=request, capture_output=True, text=True,
                          timeout=20, check=False)


def refusals(env: Env, expected: int) -> str:
    """The reasons of the last `expected` refused handshakes, from the agent's audit log.
    (asyncio closes a refused TLS connection without sending the alert, so clients
    see the connection end with no data; the server records why.) Repeated refusals
    of one peer are written as one record with a count, so the counts are summed."""
    log = env.agent.agent.audit
    deadline = time.monotonic() + 10
    while True:
        log.flush()
        recs = [json.loads(x) for x in log.path.read_text().splitlines()]
        fails = [r for r in recs if r["type"] == "security.auth_failure"]
        if sum(r["details"]["count"] for r in fails) >= env.seen_failures + expected \
                or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    counted, new = 0, []
    for r in fails:
        if counted >= env.seen_failures:
            new.append(r)
        counted += r["details"]["count"]
    env.seen_failures = counted
    assert sum(r["details"]["count"] for r in new) == expected, new
    assert all(r["details"]["remote"] == "127.0.0.1" for r in new)
    reasons = {r["details"]["reason"] + " / " + r["details"]["error"] for r in new}
    assert len({r["details"]["reason"] for r in new}) == 1, reasons  # same cause for both
    return " ".join(reasons)


def test_valid_certificate_is_served(env: Env) -> None:
    ok = curl(env, cert_dir=env.certs)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["devices"]
    out = s_client(env, cert_dir=env.certs)
    assert "HTTP/1.1 200 OK" in out.stdout, out.stderr
    assert "Protocol  : TLSv1.3" in out.stdout or "TLSv1.3" in out.stdout


def test_no_client_certificate_is_refused(env: Env) -> None:
    out = curl(env)
    assert out.returncode != 0 and out.stdout == ""
    s = s_client(env)
    assert "HTTP/1.1" not in s.stdout
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in refusals(env, 2)


def test_certificate_from_another_ca_is_refused(env: Env) -> None:
    out = curl(env, cert_dir=env.other)
    assert out.returncode != 0 and out.stdout == ""
    s = s_client(env, cert_dir=env.other)
    assert "HTTP/1.1" not in s.stdout
    assert "unable to get local issuer certificate" in refusals(env, 2)


def test_expired_certificate_is_refused(env: Env) -> None:
    out = curl(env, cert_dir=env.expired)
    assert out.returncode != 0 and out.stdout == ""
    s = s_client(env, cert_dir=env.expired)
    assert "HTTP/1.1" not in s.stdout
    assert "certificate has expired" in refusals(env, 2)


def test_tls12_is_refused(env: Env) -> None:
    out = curl(env, "--tlsv1.2", "--tls-max", "1.2", cert_dir=env.certs)
    assert out.returncode != 0 and out.stdout == ""
    s = s_client(env, cert_dir=env.certs, version="-tls1_2")
    assert s.returncode != 0 and "HTTP/1.1" not in s.stdout
    assert "UNSUPPORTED_PROTOCOL" in refusals(env, 2)


def test_pins(env: Env) -> None:
    wrong = curl(env, "--pinnedpubkey", "sha256//" + "A" * 43 + "=", cert_dir=env.certs)
    assert wrong.returncode == 90 and wrong.stdout == ""  # curl: SSL pinned key mismatch
    right = curl(env, "--pinnedpubkey", env.pin(), cert_dir=env.certs)
    assert right.returncode == 0, right.stderr
    with AgentClient(env.certs, "alice", "node-a", env.port, pins=[env.pin()]) as c:
        assert c.devices()
    with AgentClient(env.certs, "alice", "node-a", env.port,
                     pins=["sha256//" + "B" * 43 + "="]) as c, \
            pytest.raises(ConnectionError, match="matches none"):
        c.devices()


def _server_pin(env: Env) -> str:
    ctx = client_context(env.certs / "alice.pem", env.certs / "alice.key",
                         env.certs / "ca.pem")
    with socket.create_connection(("127.0.0.1", env.port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="node-a") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return spki_pin(der)


def test_rotation_while_running(env: Env) -> None:
    old_pin = env.pin()
    assert _server_pin(env) == old_pin
    kept = AgentClient(env.certs, "alice", "node-a", env.port, pins=[old_pin])
    both = AgentClient(env.certs, "alice", "node-a", env.port)
    try:
        assert kept.devices()  # a kept-alive connection made under the old certificate
        init_certs(env.certs, ["node-a"])  # a new key and certificate, same CA
        new_pin = env.pin()
        assert new_pin != old_pin
        env.agent.call(env.agent.agent.reload())
        assert _server_pin(env) == new_pin  # new connections get the new certificate
        assert kept.devices()  # the open connection keeps working
        both.pins = frozenset({old_pin, new_pin})
        assert both.devices()
        assert curl(env, "--pinnedpubkey", old_pin, cert_dir=env.certs).returncode == 90
        assert curl(env, "--pinnedpubkey", new_pin, cert_dir=env.certs).returncode == 0
    finally:
        kept.close()
        both.close()
    rotated = [json.loads(x) for x in env.agent.agent.config.audit_log.read_text().splitlines()
               if '"security.cert_rotated"' in x]
    assert rotated and rotated[-1]["outcome"] == "success"


def test_tls_context_refuses_tls12_in_python_too(env: Env) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(env.certs / "ca.pem")
    ctx.load_cert_chain(env.certs / "alice.pem", env.certs / "alice.key")
    with socket.create_connection(("127.0.0.1", env.port), timeout=10) as raw, \
            pytest.raises(ssl.SSLError):
        ctx.wrap_socket(raw, server_hostname="node-a")
