"""A Ray cluster lab: nodes in their own network namespaces, joined through
veth pairs to a bridge in one more namespace, with no route out.

Every Ray process runs in a namespace the lab made, with usage statistics
off (and their report address at a loopback discard port), ``HOME`` at a lab
directory whose ``ray_bootstrap_config.yaml`` says ``provider: {type:
local}`` (so Ray never asks a cloud metadata address about the instance) and
``RAY_TMPDIR`` in the lab directory. Teardown ends the processes found in the
lab's own namespaces, by pid (never ``ray stop``, which would end every Ray
process of the host), then deletes the namespaces, whatever happened.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import exogpu
from netlab import netns_unavailable_reason

# The folder holding the exogpu under test (site-packages, or python/ in a dev tree).
PACKAGE_PARENT = str(Path(exogpu.__file__).resolve().parents[1])
SUBNET = "10.79.0"
HEAD_PORT = 6379


def ray_unavailable_reason() -> str | None:
    """Why a Ray lab cannot run here, or None when it can."""
    reason = netns_unavailable_reason()
    if reason is not None:
        return reason
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray is not installed (pip install 'exogpu[ray]')"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@dataclass(frozen=True)
class LabNode:
    name: str  # also the namespace
    ip: str
    port_dev: str  # the bridge's end of its veth pair, in the bridge namespace


@dataclass
class RayLab:
    tag: str
    work: Path
    switch_ns: str
    nodes: list[LabNode] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    # -- network ----------------------------------------------------------------------
    def add_node(self) -> LabNode:
        i = len(self.nodes)
        node = LabNode(f"ray-{self.tag}-n{i}", f"{SUBNET}.{10 + i}", f"ray-{self.tag}v{i}")
        _ip("netns", "add", node.name)
        self.nodes.append(node)
        _ip("-n", node.name, "link", "set", "lo", "up")
        _ip("-n", self.switch_ns, "link", "add", node.port_dev, "type", "veth",
            "peer", "name", "eth0", "netns", node.name)
        _ip("-n", self.switch_ns, "link", "set", node.port_dev, "master", "br0")
        _ip("-n", self.switch_ns, "link", "set", node.port_dev, "up")
        # A /24 on eth0 and nothing else: no default route, so nothing leaves.
        _ip("-n", node.name, "addr", "add", f"{node.ip}/24", "dev", "eth0")
        _ip("-n", node.name, "link", "set", "eth0", "up")
        return node

    def shape(self, node: LabNode, rate: str) -> None:
        """Token-bucket-limit the node's link in both directions: the egress of
        its eth0 and the egress of the bridge port towards it."""
        for ns, dev in ((node.name, "eth0"), (self.switch_ns, node.port_dev)):
            subprocess.run(
                ["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate,
                 "burst", "64kb", "latency", "50ms"],
                check=True, capture_output=True, text=True, timeout=30,
            )

    def routes(self, node: LabNode) -> str:
        return subprocess.run(["ip", "-n", node.name, "route", "show"], check=True,
                              capture_output=True, text=True, timeout=30).stdout

    # -- processes ----------------------------------------------------------------------
    def env(self, node: LabNode | None = None, extra: Mapping[str, str] | None = None
            ) -> dict[str, str]:
        """The environment of every Ray process of the lab (and its drivers)."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": PACKAGE_PARENT,
            "HOME": str(self.work / "home"),
            "RAY_TMPDIR": str(self.work / "rt"),
            "TMPDIR": str(self.work / "tmp"),
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
            "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
            "EXOGPU_CACHE_DIR": str(self.work / "cache" / (node.name if node else "driver")),
            "LANG": "C.UTF-8",
        }
        env.update(extra or {})
        return env

    def run(self, node: LabNode, argv: Sequence[str], timeout: float,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", node.name, *argv], capture_output=True, text=True,
            timeout=timeout, env=self.env(node, env), stdin=subprocess.DEVNULL,
        )

    def python(self, node: LabNode, code: str, timeout: float,
               env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(node, [sys.executable, "-c", code], timeout, env)

    def ray_start(self, node: LabNode, head: LabNode | None, timeout: float = 90.0,
                  env: Mapping[str, str] | None = None, num_cpus: int = 2
                  ) -> subprocess.CompletedProcess[str]:
        """`ray start` in the node's namespace: the head when `head` is None or
        the node itself, else a worker joining `head`."""
        argv = [sys.executable, "-m", "ray.scripts.scripts", "start",
                f"--node-ip-address={node.ip}", f"--num-cpus={num_cpus}", "--num-gpus=0",
                "--object-store-memory=80000000", "--disable-usage-stats"]
        if head is None or head == node:
            argv += ["--head", f"--port={HEAD_PORT}", "--include-dashboard=false"]
        else:
            argv += [f"--address={head.ip}:{HEAD_PORT}"]
        # The daemons `ray start` leaves behind inherit its stdout: a pipe would
        # never reach end-of-file, so the output goes to a file.
        log = self.work / f"start-{node.name}.log"
        self.logs.append(log)
        with log.open("w") as out:
            done = subprocess.run(
                ["ip", "netns", "exec", node.name, *argv], stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, timeout=timeout, env=self.env(node, env), text=True,
            )
        done.stdout = log.read_text()
        done.stderr = ""
        return done

    def pids(self, ns: str) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                             timeout=30).stdout
        return [int(p) for p in out.split()]

    def kill(self, ns: str, grace: float = 5.0) -> None:
        """End every process in namespace `ns`, by pid: TERM, then KILL."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self.pids(ns)
            for pid in pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while self.pids(ns) and time.monotonic() < deadline:
                time.sleep(0.1)
            if not self.pids(ns):
                return

    def teardown(self) -> None:
        for node in self.nodes:
            with suppress(subprocess.SubprocessError, OSError):
                self.kill(node.name)
        for ns in [n.name for n in self.nodes] + [self.switch_ns]:
            with suppress(subprocess.SubprocessError, OSError):
                _ip("netns", "del", ns)


def _write_home(work: Path) -> None:
    for sub in ("home", "rt", "tmp", "cache"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    (work / "home" / "ray_bootstrap_config.yaml").write_text("provider:\n  type: local\n")


@contextmanager
def ray_lab(node_count: int) -> Iterator[RayLab]:
    """`node_count` empty node namespaces on one bridge; the caller starts Ray.

    The work directory is short (Ray's Unix socket paths live under
    RAY_TMPDIR and must stay under about 100 characters) and removed at exit.
    """
    tag = uuid.uuid4().hex[:4]
    work = Path(tempfile.mkdtemp(prefix="ray-lab-", dir="/tmp"))
    lab = RayLab(tag=tag, work=work, switch_ns=f"ray-{tag}-sw")
    try:
        _write_home(work)
        _ip("netns", "add", lab.switch_ns)
        _ip("-n", lab.switch_ns, "link", "set", "lo", "up")
        _ip("-n", lab.switch_ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", lab.switch_ns, "link", "set", "br0", "up")
        for _ in range(node_count):
            lab.add_node()
        yield lab
    finally:
        lab.teardown()
        if os.environ.get("EXOGPU_KEEP_RAY_LAB") != "1":
            shutil.rmtree(work, ignore_errors=True)


def json_tail(text: str) -> object:
    """The JSON document on the last line of a driver's output."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("the driver printed nothing")
    return json.loads(lines[-1])
