"""The agent's API: authorisation per route, audit of every request, policy updates,
metrics, the probe hook, and a graceful shutdown of the real command."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import exogpu
from exogpu.agent import AgentClient, AgentConfig, AgentError, AgentThread
from exogpu.security.audit_verify import verify_files
from exogpu.security.policy_file import load_policy
from exogpu.security.tls import init_certs

POLICY = """
[[principals]]
name = "root"
roles = ["admin"]
devices = ["*"]

[[principals]]
name = "cpu-admin"
roles = ["admin"]
devices = ["cpu:*"]

[[principals]]
name = "watcher"
roles = ["monitor"]
devices = ["*"]

[[principals]]
name = "blind"
roles = ["monitor"]
devices = ["nosuch:*"]
"""
NAMES = ["node-a", "root", "cpu-admin", "watcher", "blind", "eve"]


@dataclass
class Env:
    root: Path
    agent: AgentThread
    probes: list[tuple[str, str]]

    def client(self, name: str) -> AgentClient:
        port = self.agent.agent.port
        assert port is not None
        return AgentClient(self.root / "certs", name, "node-a", port)

    def records(self) -> list[dict[str, Any]]:
        self.agent.agent.audit.flush()
        return [json.loads(x) for x in (self.root / "audit.log").read_text().splitlines()]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    init_certs(tmp_path / "certs", NAMES)
    (tmp_path / "policy.toml").write_text(POLICY)
    probes: list[tuple[str, str]] = []

    async def probe_hook(token: str, bind: str) -> dict[str, Any]:
        probes.append((token, bind))
        return {"port": 5201}

    config = AgentConfig(certs=tmp_path / "certs", node="node-a",
                         policy=tmp_path / "policy.toml", audit_log=tmp_path / "audit.log",
                         reload_interval=3600)
    with AgentThread(config, network_probe=probe_hook) as agent:
        yield Env(tmp_path, agent, probes)


def test_devices_and_backends_come_from_the_core(env: Env) -> None:
    with env.client("watcher") as c:
        assert c.devices() == [d.info.to_dict() for d in exogpu.devices()]
        assert c.backends() == [b.to_dict() for b in exogpu.backends()]
    with env.client("blind") as c:
        assert c.devices() == []  # may list, but holds no device here


def _families(text: str) -> dict[str, Any]:
    """Parsed with prometheus_client's own parser: the exposition must be valid."""
    return {f.name: f for f in text_string_to_metric_families(text)}


def _samples(family: Any) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples}


def test_metrics_in_prometheus_text_format(env: Env) -> None:
    with env.client("watcher") as c:
        c.devices()
        text = c.metrics()
    families = _families(text)
    for d in exogpu.devices():
        totals = [s.value for s in families["exogpu_device_memory_total_bytes"].samples
                  if s.labels["device"] == d.id]
        assert totals == [d.info.memory_total]
        frees = [s.value for s in families["exogpu_device_memory_free_bytes"].samples
                 if s.labels["device"] == d.id]
        assert len(frees) == 1 and 0 < frees[0] <= d.info.memory_total
    requests = families["exogpu_agent_requests"]
    assert requests.type == "counter"
    assert _samples(requests)[(("method", "GET"), ("path", "/v1/devices"),
                               ("status", "200"))] == 1.0


def test_metrics_show_only_what_the_scope_allows(env: Env) -> None:
    with env.client("eve") as e, pytest.raises(AgentError):
        e.devices()  # eve's refused request, which watcher must not see counted
    with env.client("blind") as b:
        blind = _families(b.metrics())
    with env.client("watcher") as w:
        w.devices()
        watcher = _families(w.metrics())
    with env.client("root") as r:
        root = _families(r.metrics())
    # devices: only those the caller may monitor
    assert not blind["exogpu_device_memory_total_bytes"].samples
    assert {s.labels["device"] for s in watcher["exogpu_device_memory_total_bytes"].samples} \
        == {d.id for d in exogpu.devices()}
    # request counts: the caller's own; everyone's with admin.policy
    watcher_paths = _samples(watcher["exogpu_agent_requests"])
    assert watcher_paths == {(("method", "GET"), ("path", "/v1/devices"), ("status", "200")): 1.0}
    everyone = _samples(root["exogpu_agent_requests"])
    assert everyone[(("method", "GET"), ("path", "/v1/devices"), ("status", "403"))] == 1.0
    assert everyone[(("method", "GET"), ("path", "/v1/metrics"), ("status", "200"))] == 2.0
    # node-wide security counters: admin.policy only
    node_wide = {"exogpu_agent_tls_handshakes", "exogpu_agent_refused", "exogpu_agent_denied",
                 "exogpu_audit_events_written", "exogpu_audit_events_dropped",
                 "exogpu_agent_revoked_certificates", "exogpu_agent_connections"}
    assert node_wide <= set(root)
    assert not node_wide & set(watcher) and not node_wide & set(blind)
    assert _samples(root["exogpu_agent_tls_handshakes"])[(("outcome", "ok"),)] >= 4
    assert _samples(root["exogpu_agent_revoked_certificates"])[()] == 0


def test_every_request_is_authorised_and_audited(env: Env) -> None:
    calls = 0
    with env.client("watcher") as w, env.client("eve") as e, env.client("cpu-admin") as a:
        for fn in (w.devices, w.backends, w.metrics, a.devices):
            fn()
            calls += 1
        for fn in (w.audit, e.devices, e.metrics, w.start_network_probe):
            with pytest.raises(AgentError) as info:
                fn()
            assert info.value.status == 403
            calls += 1
    with env.client("watcher") as w, pytest.raises(AgentError, match="may not admin"):
        w.audit()
    calls += 1
    recs = env.records()
    requests = [r for r in recs if r["type"] == "system.api_request"]
    assert len(requests) == calls
    assert [r["principal"] for r in requests[:4]] == ["watcher", "watcher", "watcher",
                                                      "cpu-admin"]
    assert all(r["details"]["status"] == 403 and r["outcome"] == "denied"
               for r in requests[4:])
    denied = [(r["principal"], r["details"]["permission"]) for r in recs
              if r["type"] == "security.access_denied"]
    assert denied == [("watcher", "admin.policy"), ("eve", "device.list"),
                      ("eve", "monitor.memory"), ("watcher", "compute.execute"),
                      ("watcher", "admin.policy")]


def test_audit_query_is_admin_only_and_filters(env: Env) -> None:
    with env.client("watcher") as w:
        w.devices()
        w.devices()
    with env.client("root") as r:
        page = r.audit(principal="watcher", type="system.api_request")
        assert [x["details"]["path"] for x in page["records"]] == ["/v1/devices"] * 2
        first = r.audit(limit=1)
        assert len(first["records"]) == 1 and first["next_after"] == first["records"][0]["seq"]
        rest = r.audit(after=first["next_after"], limit=1000)
        assert rest["records"][0]["seq"] == first["next_after"] + 1
        assert r.audit(min_severity="critical")["records"] == []
        with pytest.raises(AgentError, match=r"400.*limit"):
            r.audit(limit=5000)
        with pytest.raises(AgentError, match="unknown severity"):
            r.audit(min_severity="loud")


def test_put_policy_applies_saves_and_refuses_escalation(env: Env) -> None:
    policy_file = env.root / "policy.toml"
    added = POLICY + '\n[[principals]]\nname = "eve"\nroles = ["monitor"]\ndevices = ["cpu:*"]\n'
    with env.client("eve") as e:
        with pytest.raises(AgentError, match="403"):
            e.devices()
        with env.client("cpu-admin") as a:
            # cpu-admin holds admin on cpu:* only: it may not grant "*"...
            with pytest.raises(AgentError) as info:
                a.put_policy(added.replace('devices = ["cpu:*"]\n', 'devices = ["*"]\n', 2))
            assert info.value.status == 403 and "escalation refused" in str(info.value)
            assert load_policy(policy_file) == env.agent.agent.access.policy
            assert "eve" not in env.agent.agent.access.policy.principals
            # ...nor remove root, but may add a monitor on cpu:*
            with pytest.raises(AgentError, match="root: changing/removing"):
                a.put_policy(added.split("[[principals]]\nname = \"cpu-admin\"")[0].replace(
                    'name = "root"', 'name = "gone"'))
            a.put_policy(added)
        # eve may see cpu:* alone
        assert e.devices() == [d.info.to_dict() for d in exogpu.devices() if d.id == "cpu:0"]
    assert "eve" in load_policy(policy_file).principals  # saved
    with env.client("root") as r:
        with pytest.raises(AgentError) as info:
            r.put_policy(POLICY.replace('roles = ["monitor"]', 'roles = ["monitr"]', 1))
        assert info.value.status == 400 and "line 14" in str(info.value)
    assert "eve" in env.agent.agent.access.policy.principals  # running policy kept
    kinds = [r["type"] for r in env.records() if r["type"].startswith("security.policy")]
    assert kinds == ["security.policy_rejected", "security.policy_rejected",
                     "security.policy_changed", "security.policy_rejected"]


def test_policy_file_edits_are_picked_up_or_refused_whole(env: Env) -> None:
    policy_file = env.root / "policy.toml"
    before = env.agent.agent.access.policy
    policy_file.write_text(POLICY + '[[principals]]\nname = "eve"\nroles = ["usr"]\n')
    os.utime(policy_file, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    env.agent.call(env.agent.agent.reload())
    assert env.agent.agent.access.policy is before
    rejected = [r for r in env.records() if r["type"] == "security.policy_rejected"]
    assert rejected and rejected[-1]["details"]["line"] == 23
    policy_file.write_text(POLICY + '[[principals]]\nname = "eve"\nroles = ["user"]\n'
                           'devices = ["*"]\n')
    os.utime(policy_file, ns=(time.time_ns(), time.time_ns() + 2_000_000))
    env.agent.call(env.agent.agent.reload())
    with env.client("eve") as e:
        assert e.devices()


def test_network_probe_hook_gets_a_one_time_token(env: Env) -> None:
    with env.client("root") as r:
        a = r.start_network_probe()
        b = r.start_network_probe()
    assert a["port"] == 5201 and len(a["token"]) >= 40 and a["token"] != b["token"]
    assert env.probes == [(a["token"], "127.0.0.1"), (b["token"], "127.0.0.1")]


def test_network_probe_without_hook_is_501(tmp_path: Path) -> None:
    init_certs(tmp_path / "certs", ["node-a", "root"])
    (tmp_path / "policy.toml").write_text(POLICY)
    config = AgentConfig(certs=tmp_path / "certs", node="node-a",
                         policy=tmp_path / "policy.toml", audit_log=tmp_path / "audit.log")
    with AgentThread(config) as agent:
        assert agent.agent.port is not None
        with AgentClient(tmp_path / "certs", "root", "node-a", agent.agent.port) as r, \
                pytest.raises(AgentError) as info:
            r.start_network_probe()
    assert info.value.status == 501 and "network probe not available" in str(info.value)


def test_missing_files_are_clear_errors(tmp_path: Path) -> None:
    config = AgentConfig(certs=tmp_path / "certs", node="node-a",
                         policy=tmp_path / "policy.toml", audit_log=tmp_path / "audit.log")
    with pytest.raises(FileNotFoundError, match="exogpu certs init"):
        AgentThread(config)


def test_command_serves_and_shuts_down_gracefully(tmp_path: Path) -> None:
    init_certs(tmp_path / "certs", ["node-a", "watcher"])
    (tmp_path / "policy.toml").write_text(POLICY)
    log = tmp_path / "audit.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "exogpu", "agent", "--certs", str(tmp_path / "certs"),
         "--node", "node-a", "--port", "0", "--policy", str(tmp_path / "policy.toml"),
         "--audit-log", str(log), "--audit-durability", "buffered"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"listening on https://127\.0\.0\.1:(\d+)", line)
        assert m, line + (proc.stderr.read() if proc.stderr else "")
        with AgentClient(tmp_path / "certs", "watcher", "node-a", int(m.group(1))) as c:
            for _ in range(5):
                assert c.devices()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        proc.kill()
        proc.wait()
    report = verify_files([log])  # strict: closed cleanly, nothing torn
    assert report.ok, report.first_bad
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert recs[0]["type"] == "system.start" and recs[-1]["type"] == "system.stop"
    assert sum(r["type"] == "system.api_request" for r in recs) == 5


def test_expiring_certificate_is_warned_and_audited(tmp_path: Path) -> None:
    init_certs(tmp_path / "certs", ["node-a"], days=10)
    (tmp_path / "policy.toml").write_text(POLICY)
    config = AgentConfig(certs=tmp_path / "certs", node="node-a",
                         policy=tmp_path / "policy.toml", audit_log=tmp_path / "audit.log")
    with AgentThread(config):
        pass
    recs = [json.loads(x) for x in (tmp_path / "audit.log").read_text().splitlines()]
    warnings = [r["details"]["message"] for r in recs if r["type"] == "security.cert_expiring"]
    assert len(warnings) == 1 and "node-a.pem: certificate expires in 9 days" in warnings[0]


def test_network_probe_servers_take_one_session(tmp_path: Path) -> None:
    from exogpu import netprobe
    from exogpu.agent.network_probe import NetworkProbeServers

    init_certs(tmp_path / "certs", ["node-a", "root", "watcher"])
    (tmp_path / "policy.toml").write_text(POLICY)
    config = AgentConfig(certs=tmp_path / "certs", node="node-a",
                         policy=tmp_path / "policy.toml", audit_log=tmp_path / "audit.log")
    servers = NetworkProbeServers(ttl=30, max_servers=1, poll=0.05)
    with AgentThread(config, network_probe=servers) as agent:
        assert agent.agent.port is not None
        with AgentClient(tmp_path / "certs", "root", "node-a", agent.agent.port) as r:
            started = r.start_network_probe()
            with pytest.raises(AgentError) as info:  # one at a time here
                r.start_network_probe()
            assert info.value.status == 503 and "at most 1" in str(info.value)
            with pytest.raises(netprobe.ProbeAuthenticationError):
                netprobe.measure("127.0.0.1", started["port"], "not-the-token",
                                 seconds=0.2, udp_rate=0, rtt_seconds=0.1)
            result = netprobe.measure("127.0.0.1", started["port"], started["token"],
                                      seconds=0.2, udp_rate=0, rtt_seconds=0.1)
            assert result.to_dict()
            deadline = time.monotonic() + 10
            while servers.running and time.monotonic() < deadline:
                time.sleep(0.05)
            assert servers.running == 0  # the token was good for one session
            with pytest.raises(netprobe.ProbeError):
                netprobe.measure("127.0.0.1", started["port"], started["token"],
                                 seconds=0.2, udp_rate=0, rtt_seconds=0.1, connect_timeout=1)
            again = r.start_network_probe()
            assert again["token"] != started["token"]
    assert servers.running == 0  # closed with the agent
    log = (tmp_path / "audit.log").read_text()
    assert started["token"] not in log and again["token"] not in log  # secrets stay out
