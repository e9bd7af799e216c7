"""exogpu.ray on a real Ray cluster: three nodes in network namespaces (one
behind a tbf-shaped link), joined with mutual TLS from exogpu's certificates.

Safety: every Ray process runs in the lab's namespaces (no route out), with
usage stats off, HOME holding a local-provider bootstrap config and RAY_TMPDIR
in the lab (tests/python/raylab.py); teardown is by pid in those namespaces.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from raylab import LabNode, RayLab, json_tail, ray_lab, ray_unavailable_reason

_reason = ray_unavailable_reason()
pytestmark = pytest.mark.skipif(_reason is not None, reason=_reason or "")

RATE = "40mbit"
RATE_BPS = 40e6
DRIVER = Path(__file__).with_name("raylab_driver.py")


class Lab:
    def __init__(self, lab: RayLab, certs: Path) -> None:
        self.lab = lab
        self.certs = certs
        self.head, self.fast, self.slow, self.rogue = lab.nodes

    def tls(self, node: LabNode, certs: Path | None = None) -> dict[str, str]:
        from exogpu.ray import ray_tls_env

        return ray_tls_env(certs or self.certs, node.name, ip=node.ip)

    def driver(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return self.lab.run(self.head, [sys.executable, *argv], timeout, self.tls(self.head))


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    from exogpu.security.tls import init_certs

    with ray_lab(4) as raw:
        certs = raw.work / "certs"
        init_certs(certs, [f"{n.name}={n.ip}" for n in raw.nodes[:3]])
        # The rogue trusts the cluster's CA but holds a certificate of its own CA.
        init_certs(raw.work / "rogue", [f"{raw.nodes[3].name}={raw.nodes[3].ip}"])
        (raw.work / "rogue" / "ca.pem").write_bytes((certs / "ca.pem").read_bytes())
        lab = Lab(raw, certs)
        raw.shape(lab.slow, RATE)
        head = raw.ray_start(lab.head, None, env=lab.tls(lab.head))
        assert head.returncode == 0, head.stdout[-3000:]
        # One at a time: two joining at once overload a small machine's GCS.
        for node in (lab.fast, lab.slow):
            done = raw.ray_start(node, lab.head, env=lab.tls(node))
            assert done.returncode == 0, done.stdout[-3000:]
        yield lab


@pytest.fixture(scope="module")
def driven(lab: Lab) -> dict[str, Any]:
    done = lab.driver([str(DRIVER), f"{lab.head.ip}:6379", lab.slow.ip], timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    out = json_tail(done.stdout)
    assert isinstance(out, dict)
    print(json.dumps({k: out[k] for k in ("timings", "links", "pair_seconds")}, indent=1))
    return out


def test_lab_has_no_route_out(lab: Lab) -> None:
    for node in lab.lab.nodes:
        routes = lab.lab.routes(node).strip().splitlines()
        assert routes == [f"10.79.0.0/24 dev eth0 proto kernel scope link src {node.ip}"]


def test_three_distinct_nodes_and_addresses(lab: Lab, driven: dict[str, Any]) -> None:
    nodes = driven["nodes"]
    assert sorted(n["ip"] for n in nodes) == sorted(n.ip for n in (lab.head, lab.fast, lab.slow))
    assert len({n["node_id"] for n in nodes}) == 3
    # The inventory ran on each node (the task checks its own node id).
    assert sorted(i["node_id"] for i in driven["inventory"]) == sorted(n["node_id"] for n in nodes)
    for inv in driven["inventory"]:
        assert inv["devices"] and inv["speed_source"] == "measured"


def test_links_through_the_shaped_node_measure_its_rate(
    lab: Lab, driven: dict[str, Any]
) -> None:
    by_ip = {n["name"]: n["ip"] for n in driven["nodes"]}
    assert driven["unmeasured"] == []
    slow, fast = [], []
    for link in driven["links"]:
        ips = {by_ip[link["a"]], by_ip[link["b"]]}
        (slow if lab.slow.ip in ips else fast).append(link["bandwidth_bps"])
    assert len(slow) == 2 and len(fast) == 1
    for bps in slow:
        assert 0.75 * RATE_BPS <= bps <= 1.05 * RATE_BPS, bps
    assert fast[0] > 10 * max(slow), (fast, slow)


def test_plan_keeps_the_heavy_hop_off_the_slow_link(driven: dict[str, Any]) -> None:
    slow = driven["slow_node"]
    stages = driven["plan"]["stages"]
    placement = driven["plan"]["placement"]
    assert placement["feasible"]
    assert len(stages) == 2 and slow not in {s["node"] for s in stages}
    # The best plan through the slow node (it last, one hop over its link) is
    # worse on the links as measured, because of that one hop.
    with_slow = driven["with_slow_node"]
    assert with_slow["feasible"]
    assert with_slow["bottleneck"] > placement["bottleneck"]
    slow_hop = max(with_slow["hops"], key=lambda h: h["time"])
    assert slow_hop["to"].startswith(slow + "/")
    assert slow_hop["time"] > placement["bottleneck"]


def test_each_stage_actor_runs_where_the_plan_said(driven: dict[str, Any]) -> None:
    stages = driven["plan"]["stages"]
    selectors = driven["plan"]["placement_group"]["bundle_label_selector"]
    assert driven["plan"]["placement_group"]["strategy"] == "PACK"
    assert [s["bundle_index"] for s in stages] == list(range(len(stages)))
    assert selectors == [{"ray.io/node-id": s["node_id"]} for s in stages]
    got = {a["bundle_index"]: a for a in driven["actors"]}
    for s in stages:
        assert got[s["bundle_index"]]["node_id"] == s["node_id"]
        assert got[s["bundle_index"]]["ip"] == s["ip"]


def test_bundle_for_a_missing_node_times_out_with_the_reason(driven: dict[str, Any]) -> None:
    ghost = driven["ghost"]
    assert ghost["type"] == "RayTimeout"
    assert "ghost" in ghost["error"] and "no such alive node" in ghost["error"]
    assert "PENDING" in ghost["error"]
    assert ghost["seconds"] < 15


def test_cli_plan_on_ray_and_a_rogue_node_cannot_join(lab: Lab, driven: dict[str, Any]) -> None:
    # The rogue tries to join while the CLI runs: a certificate of another CA.
    with ThreadPoolExecutor(1) as pool:
        rogue = pool.submit(_rogue_join, lab)
        cli = lab.driver(
            ["-m", "exogpu", "plan", "--ray", f"{lab.head.ip}:6379", "--model", "llama-3-8b",
             "--json"],
            timeout=180,
        )
        joined, log = rogue.result()
    assert cli.returncode == 0, cli.stdout[-2000:] + cli.stderr[-3000:]
    doc = json.loads(cli.stdout)
    ids = {n["node_id"] for n in driven["nodes"]}
    assert {n["node_id"] for n in doc["nodes"]} == ids
    assert doc["stages"] and all(s["node_id"] in ids for s in doc["stages"])
    assert [s["bundle_index"] for s in doc["stages"]] == list(range(len(doc["stages"])))
    assert all(s["ip"] for s in doc["stages"])
    assert not joined, log[-2000:]
    assert "Ray runtime started" not in log
    # Still three nodes, the rogue's address among none of them.
    check = lab.driver(
        ["-c", f"import json, ray; ray.init(address='{lab.head.ip}:6379', "
               "logging_level='ERROR'); print(json.dumps([n['NodeManagerAddress'] "
               "for n in ray.nodes() if n['Alive']]))"],
        timeout=60,
    )
    alive = json_tail(check.stdout)
    assert isinstance(alive, list) and sorted(alive) == sorted(
        n.ip for n in (lab.head, lab.fast, lab.slow)
    )


def _raw_tls(lab: Lab) -> dict[str, str]:
    """The rogue's files as Ray would take them (ray_tls_env refuses them:
    its certificate is not from the CA it names)."""
    d = lab.lab.work / "rogue"
    return {"RAY_USE_TLS": "1", "RAY_TLS_SERVER_CERT": str(d / f"{lab.rogue.name}.pem"),
            "RAY_TLS_SERVER_KEY": str(d / f"{lab.rogue.name}.key"),
            "RAY_TLS_CA_CERT": str(d / "ca.pem")}


def _rogue_join(lab: Lab) -> tuple[bool, str]:
    """`ray start` of the rogue, bounded; then its namespace is emptied by pid."""
    try:
        done = lab.lab.ray_start(lab.rogue, lab.head, timeout=20, env=_raw_tls(lab))
        joined = done.returncode == 0
    except subprocess.TimeoutExpired:
        joined = False
    lab.lab.kill(lab.rogue.name)
    return joined, (lab.lab.work / f"start-{lab.rogue.name}.log").read_text()

