"""Certificates taken back: `exogpu certs revoke` and re-issuing with `exogpu certs
init`, checked by a running agent on every handshake, picked up without a restart,
and seen from real clients (curl, openssl s_client)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from exogpu.agent import AgentConfig, AgentThread
from exogpu.security.tls import CRL_FILE, make_ca, revoke, serial_of

pytestmark = pytest.mark.skipif(not (shutil.which("openssl") and shutil.which("curl")),
                                reason="needs openssl and curl")

POLICY = """
[[principals]]
name = "alice"
roles = ["user"]
devices = ["*"]

[[principals]]
name = "bob"
roles = ["user"]
devices = ["*"]
"""
PYTHON = [sys.executable, "-m", "exogpu"]


@dataclass
class Env:
    root: Path
    certs: Path
    agent: AgentThread

    @property
    def port(self) -> int:
        assert self.agent.agent.port is not None
        return self.agent.agent.port

    def records(self) -> list[dict[str, Any]]:
        self.agent.agent.audit.flush()
        return [json.loads(x) for x in (self.root / "audit.log").read_text().splitlines()]

    def reload(self) -> None:
        self.agent.call(self.agent.agent.reload())


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)  # the exogpu under test, installed or on PYTHONPATH
    return subprocess.run([*PYTHON, *args], capture_output=True, text=True, timeout=60,
                          env=env, check=False)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    certs = tmp_path / "certs"
    made = cli("certs", "init", str(certs), "--node", "node-a", "--node", "alice",
               "--node", "bob")
    assert made.returncode == 0, made.stderr
    (tmp_path / "policy.toml").write_text(POLICY)
    config = AgentConfig(certs=certs, node="node-a", policy=tmp_path / "policy.toml",
                         audit_log=tmp_path / "audit.log", reload_interval=3600)
    with AgentThread(config) as agent:
        yield Env(tmp_path, certs, agent)


def curl(env: Env, cert: Path, key: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--cacert", str(env.certs / "ca.pem"),
         "--resolve", f"node-a:{env.port}:127.0.0.1", "--cert", str(cert), "--key", str(key),
         f"https://node-a:{env.port}/v1/backends"],
        capture_output=True, text=True, timeout=20, check=False)


def s_client(env: Env, cert: Path, key: Path, *, sni: bool) -> str:
    cmd = ["openssl", "s_client", "-tls1_3", "-connect", f"127.0.0.1:{env.port}",
           "-CAfile", str(env.certs / "ca.pem"), "-cert", str(cert), "-key", str(key),
           "-ign_eof", *(["-servername", "node-a"] if sni else ["-noservername"])]
    request = "GET /v1/backends HTTP/1.1\r\nHost: node-a\r\nConnection: close\r\n\r\n"
    out = subprocess.run(cmd, input=request, capture_output=True, text=True, timeout=20,
                         check=False)
    return out.stdout


def served(env: Env, name: str, directory: Path | None = None) -> bool:
    d = directory or env.certs
    ok = curl(env, d / f"{name}.pem", d / f"{name}.key")
    with_sni = "HTTP/1.1 200 OK" in s_client(env, d / f"{name}.pem", d / f"{name}.key",
                                             sni=True)
    without_sni = "HTTP/1.1 200 OK" in s_client(env, d / f"{name}.pem", d / f"{name}.key",
                                                sni=False)
    results = {ok.returncode == 0 and '"backends"' in ok.stdout, with_sni, without_sni}
    assert len(results) == 1, (ok, with_sni, without_sni)  # every client agrees
    return results.pop()


def revoked_refusals(env: Env) -> int:
    return sum(r["details"]["count"] for r in env.records()
               if r["type"] == "security.auth_failure"
               and r["details"]["reason"] == "certificate revoked")


def test_revoke_takes_effect_without_a_restart(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    assert cli("certs", "init", str(certs), "--node", "node-a", "--node", "alice",
               "--node", "bob").returncode == 0
    (tmp_path / "policy.toml").write_text(POLICY)
    config = AgentConfig(certs=certs, node="node-a", policy=tmp_path / "policy.toml",
                         audit_log=tmp_path / "audit.log", reload_interval=0.2)
    with AgentThread(config) as agent:
        env = Env(tmp_path, certs, agent)
        assert served(env, "alice") and served(env, "bob")
        out = cli("certs", "revoke", str(certs), "--node", "alice")
        assert out.returncode == 0, out.stderr
        assert "revoked" in out.stdout and "number 2" in out.stdout
        deadline = time.monotonic() + 10  # the watcher, not a call, picks it up
        while curl(env, certs / "alice.pem", certs / "alice.key").returncode == 0:
            assert time.monotonic() < deadline, "revocation never took effect"
            time.sleep(0.1)
        assert not served(env, "alice")
        assert served(env, "bob")  # one certificate revoked, not the CA
        # the refusal names the cause and the peer
        deadline = time.monotonic() + 5
        while revoked_refusals(env) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert revoked_refusals(env) >= 4
        fails = [r for r in env.records() if r["type"] == "security.auth_failure"]
        assert all(r["details"]["remote"] == "127.0.0.1" for r in fails)
        rotated = [r for r in env.records() if r["type"] == "security.cert_rotated"]
        assert rotated[-1]["details"]["crl_number"] == 2
        assert rotated[-1]["details"]["revoked"] == 1


def test_reissuing_a_certificate_revokes_the_one_it_replaces(env: Env) -> None:
    old = env.root / "old"
    old.mkdir()
    for suffix in (".pem", ".key"):
        shutil.copy(env.certs / f"alice{suffix}", old / f"alice{suffix}")
    out = cli("certs", "init", str(env.certs), "--node", "alice")
    assert out.returncode == 0, out.stderr
    assert "revoked the certificate it replaces" in out.stdout
    assert served(env, "alice", old)  # not yet reloaded: the agent still has the old CRL
    env.reload()
    assert not served(env, "alice", old)
    assert served(env, "alice")  # the new certificate logs in


def test_a_replayed_forged_or_broken_crl_is_refused_and_revocations_stay(env: Env) -> None:
    crl = env.certs / CRL_FILE
    before = crl.read_bytes()  # CRL number 1: revokes nothing
    revoke(env.certs, [serial_of(env.certs / "alice.pem")])
    env.reload()
    assert not served(env, "alice")

    def replace(data: bytes) -> None:
        crl.write_bytes(data)
        os.utime(crl, ns=(time.time_ns(), time.time_ns() + 10_000_000))
        env.reload()

    forger = make_ca("exogpu cluster CA")  # same name, another key
    now = dt.datetime.now(dt.timezone.utc)
    forged = (x509.CertificateRevocationListBuilder()
              .issuer_name(forger.cert.subject)
              .last_update(now).next_update(now + dt.timedelta(days=9))
              .add_extension(x509.CRLNumber(99), critical=False)
              .sign(forger.key, hashes.SHA256()))
    cases = {
        "replayed": before,
        "forged": forged.public_bytes(serialization.Encoding.PEM),
        "garbage": b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
        "deep": b"[" * 100_000,
    }
    for label, data in cases.items():
        replace(data)
        assert not served(env, "alice"), label  # still revoked
        assert served(env, "bob"), label  # and everyone else still served
        rejected = [r for r in env.records() if r["type"] == "security.policy_rejected"]
        assert rejected and rejected[-1]["details"]["what"] == "certificates", label
    errors = [r["details"]["error"] for r in env.records()
              if r["type"] == "security.policy_rejected"]
    assert "older than the one in force" in errors[0]
    assert "does not verify" in errors[1]
    assert all("not a PEM CRL" in e for e in errors[2:])


def test_the_agent_refuses_to_start_without_a_crl(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    assert cli("certs", "init", str(certs), "--node", "node-a").returncode == 0
    (certs / CRL_FILE).unlink()
    (tmp_path / "policy.toml").write_text(POLICY)
    config = AgentConfig(certs=certs, node="node-a", policy=tmp_path / "policy.toml",
                         audit_log=tmp_path / "audit.log")
    with pytest.raises(FileNotFoundError, match="certs revoke"):
        AgentThread(config)
    assert cli("certs", "revoke", str(certs)).returncode == 0  # makes an empty one
    with AgentThread(config) as agent:
        assert agent.agent.tls.crl is not None and len(agent.agent.tls.crl) == 0


def test_revoke_command_refuses_bad_input(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    assert cli("certs", "init", str(certs), "--node", "node-a").returncode == 0
    bad = cli("certs", "revoke", str(certs), "--serial", "not-hex")
    assert bad.returncode == 2 and "not a hexadecimal serial" in bad.stderr
    missing = cli("certs", "revoke", str(certs), "--node", "nobody")
    assert missing.returncode == 2 and "nobody.pem" in missing.stderr
    assert "Traceback" not in bad.stderr + missing.stderr
    nowhere = cli("certs", "revoke", str(tmp_path / "none"), "--serial", "abc")
    assert nowhere.returncode == 2 and "Traceback" not in nowhere.stderr
