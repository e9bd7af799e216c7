"""Links between two other nodes, measured through their agents: two real agents on
loopback with mutual TLS, one starts a one-time probe server, the other runs the
probe against it; then a whole topology with the agents measuring the remote pair."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from exogpu import netprobe, topology
from exogpu.agent import AgentClient, AgentConfig, AgentError, AgentThread
from exogpu.agent.network_probe import NetworkProbeServers
from exogpu.security.tls import init_certs

POLICY = """
[[principals]]
name = "root"
roles = ["user"]
devices = ["*"]

[[principals]]
name = "watcher"
roles = ["monitor"]
devices = ["*"]
"""
NODES = ["node-a", "node-b"]
FAST = {"seconds": 0.2, "streams": 2, "rtt_seconds": 0.05}


@dataclass
class Cluster:
    root: Path
    agents: dict[str, AgentThread]
    probes: dict[str, NetworkProbeServers]

    def client(self, principal: str, node: str) -> AgentClient:
        port = self.agents[node].agent.port
        assert port is not None
        return AgentClient(self.root / "certs", principal, node, port)

    def records(self, node: str) -> list[dict[str, Any]]:
        self.agents[node].agent.audit.flush()
        text = (self.root / f"{node}.audit.log").read_text()
        return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    init_certs(tmp_path / "certs", [*NODES, "root", "watcher"])
    (tmp_path / "policy.toml").write_text(POLICY)
    agents: dict[str, AgentThread] = {}
    probes: dict[str, NetworkProbeServers] = {}
    try:
        for node in NODES:
            probes[node] = NetworkProbeServers(ttl=30, max_servers=2, poll=0.05)
            config = AgentConfig(certs=tmp_path / "certs", node=node,
                                 policy=tmp_path / "policy.toml",
                                 audit_log=tmp_path / f"{node}.audit.log",
                                 reload_interval=3600)
            agents[node] = AgentThread(config, network_probe=probes[node])
            agents[node].start()
        yield Cluster(tmp_path, agents, probes)
    finally:
        for agent in agents.values():
            agent.stop()


def _measure_body(client: AgentClient, body: Any) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, reply, _ = client.request("POST", "/v1/probe/network/measure", data,
                                      {"Content-Type": "application/json"})
    return status, json.loads(reply)


def test_agent_measures_a_probe_server_started_by_another_agent(cluster: Cluster) -> None:
    with cluster.client("root", "node-a") as a, cluster.client("root", "node-b") as b:
        started = b.start_network_probe()
        result = a.measure_network(f"127.0.0.1:{started['port']}", started["token"], **FAST)
    assert result.port == started["port"] and result.streams == 2
    assert result.bandwidth_bps is not None and result.bandwidth_bps > 0
    assert result.bulk_bytes > 0
    assert result.rtt is not None and result.rtt.median > 0 and result.rtt.samples > 0
    assert result.udp is None  # the agent skips the UDP test
    # The one-time server on node-b took its one session and closed.
    deadline = time.monotonic() + 10
    while cluster.probes["node-b"].running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cluster.probes["node-b"].running == 0
    runs = [r for r in cluster.records("node-a") if r["type"] == "compute.execute"]
    assert [(r["principal"], r["outcome"], r["details"]["action"], r["details"]["target"])
            for r in runs] == [("root", "success", "network_probe_client",
                                f"127.0.0.1:{started['port']}")]
    assert runs[0]["details"]["bandwidth_bps"] == result.bandwidth_bps
    for node in NODES:  # the token is a secret: in no audit log
        assert started["token"] not in (cluster.root / f"{node}.audit.log").read_text()


def test_result_round_trips_through_json() -> None:
    with netprobe.Server(bind="127.0.0.1", port=0) as server:
        result = netprobe.measure("127.0.0.1", server.port, server.token, seconds=0.1,
                                  streams=1, udp_rate=1e6, rtt_seconds=0.05)
    assert result.udp is not None and result.rtt is not None
    assert netprobe.NetResult.from_json(result.to_json()) == result
    assert netprobe.NetResult.from_json(result.to_json(indent=None).encode()) == result
    broken = result.to_dict()
    del broken["bulk"]
    with pytest.raises(ValueError, match="'bulk'"):
        netprobe.NetResult.from_dict(broken)
    with pytest.raises(ValueError, match="JSON object"):
        netprobe.NetResult.from_json("[]")


def test_topology_measures_the_remote_pair_through_the_agents(cluster: Cluster) -> None:
    # Each node's own probe server (`exogpu probe serve`) for the local -> node links.
    with netprobe.Server(bind="127.0.0.1", port=0, token="ta") as pa, \
            netprobe.Server(bind="127.0.0.1", port=0, token="tb") as pb, \
            cluster.client("root", "node-a") as a, cluster.client("root", "node-b") as b:
        measurer = topology.agent_pair_measurer({"node-a": a, "node-b": b}, **FAST)
        topo = topology.measure({"node-a": f"127.0.0.1:{pa.port}",
                                 "node-b": f"127.0.0.1:{pb.port}"},
                                {"node-a": "ta", "node-b": "tb"}, seconds=0.2, streams=1,
                                rtt_seconds=0.05, pair_measurer=measurer)
    assert topo.unmeasured == ()
    assert [(link.a, link.b) for link in topo.links] == [
        ("local", "node-a"), ("local", "node-b"), ("node-a", "node-b")]
    pair = topo.links[2]
    assert pair.result is not None and pair.result.bandwidth_bps is not None
    assert pair.result.rtt is not None
    assert pair.result.streams == 2  # measured by the agents, with their settings
    # Placement units: bytes per second and seconds, one way.
    assert pair.bandwidth == pytest.approx(pair.result.bandwidth_bps / 8)
    assert pair.latency == pytest.approx(pair.result.rtt.median / 2e6)
    assert 0 < pair.latency < 0.1 and pair.bandwidth > 0
    assert topo.link("node-b", "node-a") == pair.spec != topology.DEFAULT_LINK
    assert {"a": "node-a", "b": "node-b", "bandwidth": pair.bandwidth,
            "latency": pair.latency} in topo.links_section()
    devices = [{"id": "cuda:0@a", "node": "node-a"}, {"id": "cuda:0@b", "node": "node-b"}]
    assert topo.links_section(devices) == [
        {"a": "cuda:0@a", "b": "cuda:0@b", "bandwidth": pair.bandwidth,
         "latency": pair.latency}]
    with pytest.raises(KeyError, match="node-c"):
        topology.agent_pair_measurer({"node-a": a})(
            topology.Node("node-a", "127.0.0.1", 1), topology.Node("node-c", "127.0.0.1", 1))


@pytest.mark.parametrize(("body", "field"), [
    (b"not json", "body"),
    ([], "body"),
    ({"token": "t"}, "target"),
    ({"target": 5, "token": "t"}, "target"),
    ({"target": "127.0.0.1", "token": "t"}, "target"),  # no port
    ({"target": "127.0.0.1:70000", "token": "t"}, "target"),
    ({"target": "127.0.0.1:5310"}, "token"),
    ({"target": "127.0.0.1:5310", "token": ""}, "token"),
    ({"target": "127.0.0.1:5310", "token": "t", "seconds": 31}, "seconds"),
    ({"target": "127.0.0.1:5310", "token": "t", "seconds": 0}, "seconds"),
    ({"target": "127.0.0.1:5310", "token": "t", "seconds": "1"}, "seconds"),
    ({"target": "127.0.0.1:5310", "token": "t", "seconds": True}, "seconds"),
    ({"target": "127.0.0.1:5310", "token": "t", "streams": 0}, "streams"),
    ({"target": "127.0.0.1:5310", "token": "t", "streams": 17}, "streams"),
    ({"target": "127.0.0.1:5310", "token": "t", "streams": 2.0}, "streams"),
    ({"target": "127.0.0.1:5310", "token": "t", "rtt_seconds": 11}, "rtt_seconds"),
    ({"target": "127.0.0.1:5310", "token": "t", "udp_rate": 1e9}, "udp_rate"),
])
def test_bad_bodies_are_400_naming_the_field(cluster: Cluster, body: Any, field: str) -> None:
    with cluster.client("root", "node-a") as a:
        status, reply = _measure_body(a, body)
    assert status == 400 and reply["error"].startswith(f"{field}:"), reply
    assert not [r for r in cluster.records("node-a") if r["type"] == "compute.execute"]


def test_principal_without_compute_execute_is_403(cluster: Cluster) -> None:
    with cluster.client("watcher", "node-a") as w, pytest.raises(AgentError) as info:
        w.measure_network("127.0.0.1:5310", "t", **FAST)
    assert info.value.status == 403 and "compute.execute" in str(info.value)
    denied = [r for r in cluster.records("node-a") if r["type"] == "security.access_denied"]
    assert [(r["principal"], r["details"]["path"]) for r in denied] == [
        ("watcher", "/v1/probe/network/measure")]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_failed_probes_are_502_and_the_agent_keeps_serving(cluster: Cluster) -> None:
    with cluster.client("root", "node-a") as a, cluster.client("root", "node-b") as b:
        started = b.start_network_probe()
        target = f"127.0.0.1:{started['port']}"
        with pytest.raises(AgentError) as info:
            a.measure_network(target, "not-the-token", **FAST)
        assert info.value.status == 502
        assert f"network probe of {target} failed" in str(info.value)
        assert "token" in str(info.value).split("failed", 1)[1]  # says why
        with pytest.raises(AgentError) as info:
            a.measure_network(f"127.0.0.1:{_closed_port()}", "t", **FAST)
        assert info.value.status == 502 and "failed" in str(info.value)
        # Still serving, and the right token still works on the same server.
        assert a.backends()
        assert a.measure_network(target, started["token"], **FAST).bandwidth_bps
    runs = [(r["outcome"], r["severity"]) for r in cluster.records("node-a")
            if r["type"] == "compute.execute"]
    assert [outcome for outcome, _ in runs] == ["failure", "failure", "success"]
    assert "not-the-token" not in (cluster.root / "node-a.audit.log").read_text()
    assert started["token"] not in (cluster.root / "node-a.audit.log").read_text()


def test_event_loop_serves_while_a_probe_runs(cluster: Cluster) -> None:
    with cluster.client("root", "node-a") as a, cluster.client("root", "node-b") as b, \
            cluster.client("root", "node-a") as other:
        started = b.start_network_probe()
        done = threading.Event()
        results: list[netprobe.NetResult] = []

        def run() -> None:
            results.append(a.measure_network(f"127.0.0.1:{started['port']}",
                                             started["token"], seconds=1.5, streams=1,
                                             rtt_seconds=0.05))
            done.set()

        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(0.3)  # the probe is under way (its bulk test alone takes 1.5 s)
        asked = time.monotonic()
        assert other.backends()
        waited = time.monotonic() - asked
        answered_during_probe = not done.is_set()
        worker.join(30)
    # A blocked event loop would have answered only after the probe, over a second later.
    assert answered_during_probe and waited < 1.0, waited
    assert results and results[0].bandwidth_bps
