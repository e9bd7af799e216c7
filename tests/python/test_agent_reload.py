"""A reload that fails, for any reason, is refused whole, audited as
`policy_rejected`, and leaves the watcher running: later policy changes and
certificate rotations still take effect, and the shutdown still ends with
`system.stop` and no traceback. Run against the real `exogpu agent` command."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from exogpu.agent import AgentClient, AgentError
from exogpu.security.tls import client_context, init_certs, spki_pin

POLICY = """
[[principals]]
name = "alice"
roles = ["user"]
devices = ["*"]
"""
WITH_EVE = POLICY + '\n[[principals]]\nname = "eve"\nroles = ["user"]\ndevices = ["*"]\n'

HOSTILE_POLICIES = {
    "nested arrays": "x = " + "[" * 50_000 + "]" * 50_000,
    "nested inline tables": "x = " + "{a = " * 20_000 + "1" + "}" * 20_000,
    "dotted keys": "a" + ".a" * 5_000 + " = 1",
    "huge integer": "[[principals]]\nname = 'x'\nmemory_quota_bytes = " + "9" * 10_000,
    "not UTF-8": "\xff\xfe[[principals]]",
    "binary": "\x00" * 100,
}


@dataclass
class Running:
    root: Path
    proc: subprocess.Popen[str]
    port: int

    @property
    def log(self) -> Path:
        return self.root / "audit.log"

    def records(self) -> list[dict[str, Any]]:
        lines = self.log.read_text(errors="replace").splitlines()
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):  # the writer may be mid-line
                out.append(json.loads(line))
        return out

    def wait_for(self, what: str, test: Callable[[], bool], timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not test():
            assert self.proc.poll() is None, f"agent exited: {self.proc.stderr}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)

    def count(self, kind: str) -> int:
        return sum(r["type"] == kind for r in self.records())

    def served(self, name: str) -> bool:
        try:
            with AgentClient(self.root / "certs", name, "node-a", self.port) as c:
                c.backends()
        except AgentError:
            return False
        return True

    def server_pin(self) -> str:
        certs = self.root / "certs"
        ctx = client_context(certs / "alice.pem", certs / "alice.key", certs / "ca.pem")
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname="node-a") as tls:
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return spki_pin(der)


def touch(path: Path, text: str | bytes) -> None:
    path.write_bytes(text.encode("latin-1") if isinstance(text, str) else text)
    stamp = time.time_ns() + 1_000_000
    os.utime(path, ns=(stamp, stamp))  # a new mtime even within the clock's grain


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Running]:
    init_certs(tmp_path / "certs", ["node-a", "alice", "eve"])
    (tmp_path / "policy.toml").write_text(POLICY)
    env = dict(os.environ)  # the exogpu under test, installed or on PYTHONPATH
    proc = subprocess.Popen(
        [sys.executable, "-m", "exogpu", "agent", "--certs", str(tmp_path / "certs"),
         "--node", "node-a", "--port", "0", "--policy", str(tmp_path / "policy.toml"),
         "--audit-log", str(tmp_path / "audit.log"), "--reload-interval", "0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"listening on https://127\.0\.0\.1:(\d+)", line)
        assert m, line + (proc.stderr.read() if proc.stderr else "")
        yield Running(tmp_path, proc, int(m.group(1)))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(20)


def test_hostile_policy_files_leave_the_watcher_running(agent: Running) -> None:
    policy = agent.root / "policy.toml"
    assert agent.served("alice") and not agent.served("eve")
    for label, text in HOSTILE_POLICIES.items():
        before = agent.count("security.policy_rejected")
        touch(policy, text)
        agent.wait_for(f"{label} rejected",
                       lambda b=before: agent.count("security.policy_rejected") > b)
        rejected = [r for r in agent.records() if r["type"] == "security.policy_rejected"][-1]
        assert rejected["details"]["what"] == "policy", label
        assert "PolicyError" in rejected["details"]["error"], (label, rejected)
        assert agent.served("alice"), label  # the old policy stays
    # a good change after all that still takes effect...
    touch(policy, WITH_EVE)
    agent.wait_for("eve admitted", lambda: agent.served("eve"))
    # ...and so does a certificate rotation, after a broken certificate first
    old_pin = agent.server_pin()
    certs = agent.root / "certs"
    good_cert = (certs / "node-a.pem").read_bytes()
    before = agent.count("security.policy_rejected")
    touch(certs / "node-a.pem", b"-----BEGIN CERTIFICATE-----\nnot one\n")
    agent.wait_for("broken certificate rejected",
                   lambda: agent.count("security.policy_rejected") > before)
    rejected = [r for r in agent.records() if r["type"] == "security.policy_rejected"][-1]
    assert rejected["details"]["what"] == "certificates"
    assert agent.server_pin() == old_pin  # still served with the old one
    touch(certs / "node-a.pem", good_cert)
    init_certs(certs, ["node-a"])
    agent.wait_for("rotation", lambda: agent.server_pin() != old_pin)
    assert agent.served("alice")
    # shutdown: system.stop, exit 0, no traceback
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(20) == 0
    assert agent.proc.stderr is not None
    stderr = agent.proc.stderr.read()
    assert "Traceback" not in stderr, stderr
    recs = agent.records()
    assert recs[-1]["type"] == "system.stop"
    assert [r["seq"] for r in recs] == list(range(recs[0]["seq"], recs[0]["seq"] + len(recs)))


def test_hostile_policy_over_the_api_is_a_400(agent: Running) -> None:
    root = agent.root
    (root / "policy.toml").write_text(POLICY.replace('roles = ["user"]', 'roles = ["admin"]'))
    agent.wait_for("alice made admin", lambda: agent.count("security.policy_changed") > 0)
    with AgentClient(root / "certs", "alice", "node-a", agent.port) as c:
        for label, text in HOSTILE_POLICIES.items():
            with pytest.raises(AgentError) as info:
                c.put_policy(text)
            assert info.value.status == 400, (label, info.value)
            assert "policy" in str(info.value) or "TOML" in str(info.value), label
        assert c.backends()  # the agent is still up and the policy unchanged
    assert agent.served("alice") and not agent.served("eve")


def test_tls_needs_no_restart_after_a_bad_key(agent: Running) -> None:
    certs = agent.root / "certs"
    old_pin = agent.server_pin()
    before = agent.count("security.policy_rejected")
    touch(certs / "node-a.key", (certs / "eve.key").read_bytes())  # does not match the cert
    agent.wait_for("mismatched key rejected",
                   lambda: agent.count("security.policy_rejected") > before)
    assert agent.server_pin() == old_pin
    with pytest.raises(ssl.SSLError):  # a TLS 1.2 client is still refused after it all
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_verify_locations(certs / "ca.pem")
        with socket.create_connection(("127.0.0.1", agent.port), timeout=10) as raw:
            ctx.wrap_socket(raw, server_hostname="node-a")
    init_certs(certs, ["node-a"])
    agent.wait_for("rotation", lambda: agent.server_pin() != old_pin)
