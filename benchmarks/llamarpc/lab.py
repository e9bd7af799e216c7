"""A heterogeneous llama.cpp RPC cluster on one machine, all of it made and
removed here:

- a client namespace and one namespace per server, each server joined to the
  client by its own veth pair (10.78.<i>.1 client side, 10.78.<i>.2 server
  side) and no other interface: nothing can leave the machine;
- every link shaped with tc tbf at its rate on both ends (switched off while
  a model loads, so that loading 1 GB does not take minutes, and on while
  tokens are timed), and a user-space delay relay in the client namespace for
  its latency (no netem here): the client reaches server i only through it;
- one ggml-rpc-server per namespace, pinned to a core, in a cgroup-v1 CPU
  group whose CFS quota sets its share of the core, and a memory group whose
  limit is the server's memory;
- an `exogpu probe serve` beside every server, reached through the same relay.

Everything is stopped by the ids this module started and removed by the
names it made, whatever happened inside the `with` block.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from llamarpc.build import LlamaCpp

CGROUP = Path("/sys/fs/cgroup")
PERIOD_US = 10_000  # CFS period: a short one keeps the throttling fine-grained
RPC_PORT = 50052
PROBE_PORT = 5310
TBF_BURST = "4kb"  # small, so that a 128 KB burst of logits pays the rate too


@dataclass(frozen=True)
class ServerSpec:
    name: str
    core: int
    cpu_share: float  # of one core; 1.0: the whole core
    rate_mbit: float
    delay_ms: float  # one way, added by the relay in each direction
    memory_bytes: int


def unavailable_reason() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "namespaces and cgroups need root"
    for tool in ("ip", "tc", "taskset"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    for controller in ("cpu", "memory"):
        if not (CGROUP / controller / "tasks").exists():
            return f"no cgroup-v1 {controller} controller at {CGROUP / controller}"
    return None


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


class Lab:
    def __init__(self, tools: LlamaCpp, specs: list[ServerSpec], log_dir: Path,
                 threads: int = 1) -> None:
        self.tools = tools
        self.specs = specs
        self.threads = threads
        self.log_dir = log_dir
        tag = uuid.uuid4().hex[:6]
        self.tag = tag
        self.client_ns = f"exl{tag}c"
        self.server_ns = [f"exl{tag}{i}" for i in range(len(specs))]
        self.client_dev = [f"exl{tag}c{i}" for i in range(len(specs))]
        self.server_dev = [f"exl{tag}s{i}" for i in range(len(specs))]
        self.cgroup = [f"exogpu-llamarpc-{tag}-{s.name}" for s in specs]
        self.token = uuid.uuid4().hex
        self.servers: list[subprocess.Popen[bytes]] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._stack = ExitStack()

    # -- addresses, as the client sees them ---------------------------------
    def server_ip(self, i: int) -> str:
        return f"10.78.{i + 1}.2"

    def rpc_endpoint(self, i: int) -> str:
        return f"127.0.0.1:{60000 + i}"  # the relay, in the client namespace

    def probe_endpoint(self, i: int) -> str:
        return f"127.0.0.1:{61000 + i}"

    # -- building and removing ------------------------------------------------
    def __enter__(self) -> Lab:
        try:
            self._make()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _make(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._namespace(self.client_ns)
        _run("ip", "-n", self.client_ns, "link", "set", "lo", "up")
        for i, spec in enumerate(self.specs):
            ns = self.server_ns[i]
            self._namespace(ns)
            _run("ip", "link", "add", self.client_dev[i], "type", "veth",
                 "peer", "name", self.server_dev[i])
            _run("ip", "link", "set", self.client_dev[i], "netns", self.client_ns)
            _run("ip", "link", "set", self.server_dev[i], "netns", ns)
            for where, dev, ip in ((self.client_ns, self.client_dev[i], f"10.78.{i + 1}.1"),
                                   (ns, self.server_dev[i], self.server_ip(i))):
                _run("ip", "-n", where, "addr", "add", f"{ip}/24", "dev", dev)
                _run("ip", "-n", where, "link", "set", dev, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            self._cgroups(i, spec)
        for i, spec in enumerate(self.specs):
            self._start_server(i, spec)
            self._start_relay(i, spec)
        self._wait_ready()

    def _namespace(self, ns: str) -> None:
        _run("ip", "netns", "add", ns)
        # Deleting a namespace removes the veth ends inside it, and their peers.
        self._stack.callback(lambda: subprocess.run(["ip", "netns", "del", ns],
                                                    capture_output=True))

    def _cgroups(self, i: int, spec: ServerSpec) -> None:
        for controller in ("cpu", "memory"):
            path = CGROUP / controller / self.cgroup[i]
            path.mkdir()
            self._stack.callback(self._remove_cgroup, path)
        cpu = CGROUP / "cpu" / self.cgroup[i]
        (cpu / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        quota = -1 if spec.cpu_share >= 1.0 else round(spec.cpu_share * PERIOD_US)
        (cpu / "cpu.cfs_quota_us").write_text(str(quota))
        self.set_memory_limit(i, spec.memory_bytes)

    @staticmethod
    def _remove_cgroup(path: Path) -> None:
        for _ in range(50):  # a group empties once its last task has exited
            try:
                path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)

    def _in_groups(self, i: int, argv: list[str], memory: bool = True) -> list[str]:
        """argv run in server i's namespace, pinned to its core, in its groups."""
        groups = [CGROUP / "cpu" / self.cgroup[i]]
        if memory:
            groups.append(CGROUP / "memory" / self.cgroup[i])
        join = " && ".join(f"echo $$ > {g / 'cgroup.procs'}" for g in groups)
        return ["sh", "-c", f'{join} && exec "$@"', "sh", "ip", "netns", "exec",
                self.server_ns[i], "taskset", "-c", str(self.specs[i].core), *argv]

    def _popen(self, argv: list[str], log: str, env: dict[str, str] | None = None
               ) -> subprocess.Popen[bytes]:
        out = (self.log_dir / log).open("wb")
        self._stack.callback(out.close)
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        self._procs.append(proc)
        self._stack.callback(_stop, proc)
        return proc

    def _start_server(self, i: int, spec: ServerSpec) -> None:
        ip = self.server_ip(i)
        self.servers.append(self._popen(
            self._in_groups(i, [str(self.tools.rpc_server), "-H", ip, "-p", str(RPC_PORT),
                                "-t", str(self.threads)]),
            f"rpc-{spec.name}.log"))
        env = {**os.environ, "EXOGPU_PROBE_TOKEN": self.token}
        self._popen(["ip", "netns", "exec", self.server_ns[i], sys.executable, "-m", "exogpu",
                     "probe", "serve", "--bind", ip, "--port", str(PROBE_PORT)],
                    f"probe-{spec.name}.log", env=env)

    def _start_relay(self, i: int, spec: ServerSpec) -> None:
        ip = self.server_ip(i)
        routes = [f"{self.rpc_endpoint(i)}={ip}:{RPC_PORT}",
                  f"{self.probe_endpoint(i)}={ip}:{PROBE_PORT}"]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        self._popen(["ip", "netns", "exec", self.client_ns, sys.executable, "-m",
                     "llamarpc.delay_proxy", "--delay-ms", str(spec.delay_ms), *routes],
                    f"relay-{spec.name}.log", env=env)

    def _wait_ready(self, timeout: float = 30.0) -> None:
        """Until every server, probe server and relay accepts connections."""
        targets = [(self.server_ns[i], self.server_ip(i), port)
                   for i in range(len(self.specs)) for port in (RPC_PORT, PROBE_PORT)]
        targets += [(self.client_ns, *self.rpc_endpoint(i).split(":"))
                    for i in range(len(self.specs))]
        deadline = time.monotonic() + timeout
        for ns, host, port in targets:
            while True:
                for proc in self._procs:
                    if proc.poll() is not None:
                        raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}: see "
                                           f"{self.log_dir}")
                probe = subprocess.run(
                    ["ip", "netns", "exec", ns, sys.executable, "-c",
                     "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])),"
                     " 1).close()", host, str(port)], capture_output=True)
                if probe.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{host}:{port} in {ns} not listening after {timeout} s")
                time.sleep(0.2)

    # -- while it runs --------------------------------------------------------
    def shape(self, on: bool) -> None:
        """tbf at each link's rate on both of its ends, or no shaping."""
        for i, spec in enumerate(self.specs):
            for ns, dev in ((self.client_ns, self.client_dev[i]),
                            (self.server_ns[i], self.server_dev[i])):
                subprocess.run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"],
                               capture_output=True)
                if on:
                    _run("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate",
                         f"{spec.rate_mbit}mbit", "burst", TBF_BURST, "latency", "100ms")

    def set_memory_limit(self, i: int, limit: int | None, timeout: float = 20.0) -> None:
        """Server i's memory limit; None lifts it (a calibration run holds
        the whole model on one server). Lowering it waits until the server
        has freed what the last client had it allocate."""
        group = CGROUP / "memory" / self.cgroup[i]
        deadline = time.monotonic() + timeout
        while True:
            try:
                (group / "memory.limit_in_bytes").write_text(str(limit or -1))
                return
            except OSError as e:  # EBUSY: it holds more than the new limit, for now
                if time.monotonic() > deadline:
                    usage = int((group / "memory.usage_in_bytes").read_text())
                    raise RuntimeError(f"server {self.specs[i].name} still holds {usage} "
                                       f"bytes, more than its limit {limit}") from e
                time.sleep(0.2)

    def link_bytes(self) -> list[int]:
        """Bytes that crossed each link so far, both directions."""
        out = []
        for i in range(len(self.specs)):
            stats = Path(f"/sys/class/net/{self.client_dev[i]}/statistics")
            text = subprocess.run(
                ["ip", "netns", "exec", self.client_ns, "cat", str(stats / "rx_bytes"),
                 str(stats / "tx_bytes")], capture_output=True, text=True, check=True).stdout
            out.append(sum(int(x) for x in text.split()))
        return out

    def reset_peak_memory(self) -> None:
        for name in self.cgroup:
            (CGROUP / "memory" / name / "memory.max_usage_in_bytes").write_text("0")

    def peak_memory(self, i: int) -> int:
        """The most memory server i's group held since the last reset, in bytes."""
        return int((CGROUP / "memory" / self.cgroup[i] / "memory.max_usage_in_bytes").read_text())

    def client(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.client_ns, *argv]

    def in_server_cpu(self, i: int, argv: list[str]) -> list[str]:
        """argv on server i's core under its CPU quota (not its memory limit)."""
        return self._in_groups(i, argv, memory=False)

    def alive(self) -> None:
        for proc in self.servers:
            if proc.poll() is not None:
                raise RuntimeError(f"rpc server {proc.pid} exited with {proc.returncode}: see "
                                   f"{self.log_dir}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

