"""Topology: links measured to real probe servers on loopback, turned into a
placement problem's `links`, the bottleneck and transfer-time estimates."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exogpu import netprobe, topology
from exogpu.topology import DEFAULT_LINK, INTRA_NODE_LINK, Link, LinkSpec, Node, Topology


@pytest.fixture
def servers() -> Iterator[list[netprobe.Server]]:
    with netprobe.Server(bind="127.0.0.1", port=0, token="t1") as a, \
            netprobe.Server(bind="127.0.0.1", port=0, token="t2") as b:
        yield [a, b]


def test_measure_links_local_to_each_node(servers: list[netprobe.Server]) -> None:
    a, b = servers
    topo = topology.measure({"a": f"127.0.0.1:{a.port}", "b": f"127.0.0.1:{b.port}"},
                            {"a": "t1", "b": "t2"}, seconds=0.3, streams=2, rtt_seconds=0.1)
    assert topo.nodes == ("local", "a", "b")
    assert [(link.a, link.b) for link in topo.links] == [("local", "a"), ("local", "b")]
    assert topo.unmeasured == (("a", "b"),)
    for link in topo.links:
        assert link.result is not None and link.result.bandwidth_bps is not None
        assert link.result.rtt is not None
        assert link.bandwidth == pytest.approx(link.result.bandwidth_bps / 8)  # bytes/s
        assert link.latency == pytest.approx(link.result.rtt.median / 2e6)  # one way, s
    section = topo.links_section()
    assert section == [link.to_dict() for link in topo.links]
    assert set(section[0]) == {"a", "b", "bandwidth", "latency"}
    assert topo.bottleneck() == min(topo.links, key=lambda link: link.bandwidth)
    # The unmeasured pair falls back to the default link.
    assert topo.link("a", "b") == DEFAULT_LINK
    assert a.stats().sessions_completed == 1 and b.stats().sessions_completed == 1


def test_pair_measurer_covers_remote_pairs(servers: list[netprobe.Server]) -> None:
    a, b = servers
    calls: list[tuple[str, str]] = []

    def from_a(x: Node, y: Node) -> netprobe.NetResult:
        calls.append((x.name, y.name))
        # Stands in for the node agent on `x` probing `y`.
        return netprobe.measure(y.host, y.port, "t2", seconds=0.2, streams=1, udp_rate=0,
                                rtt_seconds=0.05)

    topo = topology.measure({"a": f"127.0.0.1:{a.port}", "b": f"127.0.0.1:{b.port}"},
                            {"a": "t1", "b": "t2"}, seconds=0.2, streams=1, rtt_seconds=0.05,
                            pair_measurer=from_a)
    assert calls == [("a", "b")]
    assert topo.unmeasured == ()
    assert len(topo.links) == 3 and topo.link("b", "a") != DEFAULT_LINK


def test_wrong_token_for_a_node_is_an_error(servers: list[netprobe.Server]) -> None:
    with pytest.raises(netprobe.ProbeAuthenticationError):
        topology.measure([f"127.0.0.1:{servers[0].port}"], "wrong", seconds=0.1)
    with pytest.raises(ValueError, match="unique"):
        topology.measure(["h:1", "h:1"], "t")
    with pytest.raises(ValueError, match="also a remote node"):
        topology.measure({"x": "h:1"}, "t", local="x")


def synthetic() -> Topology:
    return Topology(
        local="mac",
        nodes=("mac", "pc", "pi"),
        links=(Link("mac", "pc", bandwidth=1.0e9, latency=2e-4),
               Link("mac", "pi", bandwidth=1.0e8, latency=1e-3),
               Link("pc", "pi", bandwidth=1.2e8, latency=5e-3)),
    )


def test_bottleneck_by_bandwidth_and_by_transfer_size() -> None:
    topo = synthetic()
    assert topo.bottleneck().joins("mac", "pi")  # least bandwidth
    # For small messages latency dominates: 5 ms beats 1 ms + 1 kB / 100 MB/s.
    assert topo.bottleneck(nbytes=1000).joins("pc", "pi")
    assert topo.bottleneck(nbytes=10**9).joins("mac", "pi")


def test_transfer_time_follows_the_placement_rules() -> None:
    topo = synthetic()
    devices = {"mac:metal:0": "mac", "pc:cuda:0": "pc", "pc:cuda:1": "pc", "x:cpu:0": "x"}
    n = 64 * 2**20
    assert topo.transfer_time("mac:metal:0", "pc:cuda:0", n, devices) == pytest.approx(
        2e-4 + n / 1.0e9)
    assert topo.transfer_time("pc:cuda:0", "mac:metal:0", n, devices) == pytest.approx(
        2e-4 + n / 1.0e9)  # symmetric
    assert topo.transfer_time("pc:cuda:0", "pc:cuda:1", n, devices) == pytest.approx(
        INTRA_NODE_LINK.latency + n / INTRA_NODE_LINK.bandwidth)
    assert topo.transfer_time("x:cpu:0", "pc:cuda:0", n, devices) == pytest.approx(
        DEFAULT_LINK.latency + n / DEFAULT_LINK.bandwidth)
    assert topo.transfer_time("pc:cuda:0", "pc:cuda:0", n, devices) == 0.0
    with pytest.raises(KeyError, match="nowhere"):
        topo.transfer_time("nowhere", "pc:cuda:0", n, devices)
    with pytest.raises(ValueError, match="non-negative"):
        LinkSpec(1.0, 0.0).transfer_time(-1)


def test_links_section_per_device_pair() -> None:
    devices = [{"id": "mac:metal:0", "node": "mac"}, {"id": "pc:cuda:0", "node": "pc"},
               {"id": "pc:cuda:1", "node": "pc"}, {"id": "x:cpu:0", "node": "x"}]
    section = synthetic().links_section(devices)
    assert section == [
        {"a": "mac:metal:0", "b": "pc:cuda:0", "bandwidth": 1.0e9, "latency": 2e-4},
        {"a": "mac:metal:0", "b": "pc:cuda:1", "bandwidth": 1.0e9, "latency": 2e-4},
    ]
    doc = synthetic().to_dict()
    assert doc["bottleneck"] == {"a": "mac", "b": "pi", "bandwidth": 1.0e8, "latency": 1e-3}
