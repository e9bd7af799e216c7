"""Figures for the security layer, each beside a reference measured in the same run.

  python benchmarks/security_report.py [--quick] [--json]

1. Permission checks per second (cached AccessControl.allowed), against evaluating
   the same policy without the cache.
2. Audit events per second with 8 threads, in `buffered` and `fsync` mode (and
   `flush`), against the standard library's `logging` with a JSON formatter and a
   FileHandler writing the same events; and sealed (signed checkpoints every
   `--seal-records`) against unsealed, run in pairs.
3. The node agent (its own process, mutual TLS 1.3 on loopback): handshakes per
   second and requests per second with 32 concurrent clients; errors are counted
   and must be zero.

Medians of several repetitions after a warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from exogpu.security.audit import AuditLog, EventType
from exogpu.security.audit_seal import create_seal_key
from exogpu.security.policy_file import parse_policy
from exogpu.security.rbac import AccessControl, Permission
from exogpu.security.tls import client_context, init_certs

POLICY = """
[[principals]]
name = "alice"
roles = ["user"]
devices = ["cuda:*", "cpu:0"]
deny = ["memory.copy_p2p"]
memory_quota_bytes = 8589934592

[[principals]]
name = "bob"
roles = ["power_user"]
devices = ["cuda:*"]
deny = ["memory.copy_d2d@cuda:1"]

[[principals.grants]]
roles = ["monitor"]
devices = ["*"]

[[principals]]
name = "ops"
roles = ["admin"]
devices = ["*"]
"""


def median_rate(fn: Callable[[], tuple[int, float]], reps: int) -> float:
    fn()  # warm-up
    return statistics.median(n / dt for n, dt in (fn() for _ in range(reps)))


# -- 1. permission checks ----------------------------------------------------------------
def permission_checks(reps: int, n: int) -> dict[str, float]:
    acl = AccessControl(parse_policy(POLICY))
    policy = acl.policy
    perms = list(Permission)
    cases = [(p, perm, d) for p in ("alice", "bob", "ops", "mallory") for perm in perms
             for d in ("cuda:0", "cuda:1", "cpu:0", "vulkan:3")]
    work = (cases * (n // len(cases) + 1))[:n]

    def cached() -> tuple[int, float]:
        allowed = acl.allowed
        t0 = time.perf_counter()
        for principal, perm, device in work:
            allowed(principal, perm, device)
        return len(work), time.perf_counter() - t0

    small = work[: max(1, n // 50)]

    def uncached() -> tuple[int, float]:
        t0 = time.perf_counter()
        for principal, perm, device in small:
            entry = policy.principals.get(principal)
            _ = entry is not None and perm in entry.permissions_on((device,))
        return len(small), time.perf_counter() - t0

    fast, slow = median_rate(cached, reps), median_rate(uncached, reps)
    return {"checks_per_s": fast, "uncached_checks_per_s": slow, "speedup": fast / slow}


# -- 2. audit ----------------------------------------------------------------------------
class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"ts": record.created, "level": record.levelname,
                           "type": record.msg, **getattr(record, "fields", {})},
                          separators=(",", ":"))


def _threads(n_threads: int, per_thread: int, emit: Callable[[int], None]) -> float:
    barrier = threading.Barrier(n_threads + 1)

    def run() -> None:
        barrier.wait()
        for i in range(per_thread):
            emit(i)

    threads = [threading.Thread(target=run) for _ in range(n_threads)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return t0


def audit_rate(durability: Any, per_thread: int, threads: int = 8,
               seal_records: int | None = None) -> tuple[int, float]:
    """Events per second; with `seal_records`, sealed with a checkpoint that often
    (and at close, which the timing includes through the final flush)."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("EXOGPU_BENCH_DIR")) as d:
        seal: dict[str, Any] = {}
        if seal_records is not None:
            create_seal_key(Path(d) / "seal.state", Path(d) / "seal.pub")
            seal = {"seal_key": Path(d) / "seal.state", "seal_records": seal_records}
        log = AuditLog(Path(d) / "audit.log", durability=durability, **seal)

        def emit(i: int) -> None:
            log.log(EventType.MEMORY_ALLOCATE, principal="alice", device="cuda:0",
                    details={"nbytes": 4096, "i": i})

        t0 = _threads(threads, per_thread, emit)
        log.flush()  # all of it written (on disk in fsync mode)
        elapsed = time.perf_counter() - t0
        log.close()
        return threads * per_thread, elapsed


def stdlib_rate(per_thread: int, threads: int = 8) -> tuple[int, float]:
    with tempfile.TemporaryDirectory(dir=os.environ.get("EXOGPU_BENCH_DIR")) as d:
        logger = logging.getLogger(f"bench.{time.monotonic_ns()}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        handler = logging.FileHandler(Path(d) / "std.log")
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)

        def emit(i: int) -> None:
            logger.info("memory.allocate", extra={"fields": {
                "principal": "alice", "device": "cuda:0", "details": {"nbytes": 4096, "i": i}}})

        t0 = _threads(threads, per_thread, emit)
        handler.flush()
        elapsed = time.perf_counter() - t0
        handler.close()
        logger.removeHandler(handler)
        return threads * per_thread, elapsed


def audit_figures(reps: int, per_thread: int, fsync_per_thread: int) -> dict[str, float]:
    std = median_rate(lambda: stdlib_rate(per_thread), reps)
    out = {"stdlib_logging_json_per_s": std}
    for mode, n in (("buffered", per_thread), ("flush", per_thread), ("fsync", fsync_per_thread)):
        rate = median_rate(lambda mode=mode, n=n: audit_rate(mode, n), reps)
        out[f"{mode}_per_s"] = rate
        out[f"{mode}_vs_stdlib"] = rate / std
    return out


def sealed_figures(reps: int, per_thread: int, fsync_per_thread: int,
                   seal_records: int) -> dict[str, float]:
    """Sealed against unsealed, each repetition running both back to back, so that
    drift on a shared machine hits both alike; the ratio is the median of the
    per-repetition ratios."""
    out: dict[str, float] = {"seal_records": seal_records}
    for mode, n in (("buffered", per_thread), ("fsync", fsync_per_thread)):
        audit_rate(mode, n)
        audit_rate(mode, n, seal_records=seal_records)  # warm-up, both
        plain, sealed, ratio = [], [], []
        for _ in range(reps):
            a = audit_rate(mode, n)
            b = audit_rate(mode, n, seal_records=seal_records)
            plain.append(a[0] / a[1])
            sealed.append(b[0] / b[1])
            ratio.append(sealed[-1] / plain[-1])
        out[f"{mode}_unsealed_per_s"] = statistics.median(plain)
        out[f"{mode}_sealed_per_s"] = statistics.median(sealed)
        out[f"{mode}_sealed_vs_unsealed"] = statistics.median(ratio)
    return out


# -- 3. agent ----------------------------------------------------------------------------
AGENT_POLICY = """
[[principals]]
name = "client"
roles = ["monitor"]
devices = ["*"]
"""


# The reference: the same TLS server context and route on a bare aiohttp app, with no
# authorisation and no audit, in its own process like the agent.
REFERENCE_SERVER = """
import asyncio, sys
from aiohttp import web
import exogpu
from exogpu.security.tls import server_context
d = sys.argv[1]
ctx = server_context(f"{d}/node-a.pem", f"{d}/node-a.key", f"{d}/ca.pem")
async def devices(request):
    return web.json_response({"devices": [x.info.to_dict() for x in exogpu.devices()]})
async def main():
    app = web.Application()
    app.router.add_get("/v1/devices", devices)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx, backlog=1024)
    await site.start()
    print("listening on https://127.0.0.1:%d" % site._server.sockets[0].getsockname()[1],
          flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def start_server(root: Path, kind: str) -> tuple[subprocess.Popen[str], int]:
    if kind == "reference":
        cmd = [sys.executable, "-c", REFERENCE_SERVER, str(root / "certs")]
    else:
        cmd = [sys.executable, "-m", "exogpu", "agent", "--certs", str(root / "certs"),
               "--node", "node-a", "--port", "0", "--policy", str(root / "policy.toml"),
               "--audit-log", str(root / f"audit-{kind}.log"), "--audit-durability", kind,
               # All clients share 127.0.0.1: the per-address connection limits,
               # a defence the soak measures, would otherwise throttle this run.
               "--max-per-peer", "4096", "--new-per-peer", "50000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    m = re.search(r":(\d+)$", proc.stdout.readline().strip())
    if not m:
        proc.kill()
        raise RuntimeError("agent did not start")
    return proc, int(m.group(1))


async def handshakes(ctx: ssl.SSLContext, port: int, clients: int,
                     seconds: float) -> tuple[int, int, float]:
    done = errors = 0
    stop = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal done, errors
        while time.perf_counter() < stop:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                          server_hostname="node-a")
                writer.close()
                await writer.wait_closed()
                done += 1
            except (OSError, ssl.SSLError):
                errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(clients)))
    return done, errors, time.perf_counter() - t0


async def requests(ctx: ssl.SSLContext, port: int, clients: int,
                   seconds: float) -> tuple[int, int, float]:
    import aiohttp

    done = errors = 0
    stop = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal done, errors
        # one kept-alive connection per client
        connector = aiohttp.TCPConnector(ssl=ctx, limit=1, resolver=_Loopback())
        async with aiohttp.ClientSession(connector=connector) as session:
            while time.perf_counter() < stop:
                try:
                    async with session.get(f"https://node-a:{port}/v1/devices") as resp:
                        await resp.read()
                        if resp.status == 200:
                            done += 1
                        else:
                            errors += 1
                except (aiohttp.ClientError, OSError):
                    errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(clients)))
    return done, errors, time.perf_counter() - t0


class _Loopback:
    """Resolves every name to 127.0.0.1, so the TLS name can be the node's."""

    async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[dict[str, Any]]:
        import socket

        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass


def agent_figures(reps: int, seconds: float, clients: int = 32) -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        init_certs(root / "certs", ["node-a", "client"])
        (root / "policy.toml").write_text(AGENT_POLICY)
        ctx = client_context(root / "certs" / "client.pem", root / "certs" / "client.key",
                             root / "certs" / "ca.pem")
        for kind in ("reference", "flush", "buffered"):
            proc, port = start_server(root, kind)
            try:
                for name, fn in (("handshakes", handshakes), ("requests", requests)):
                    asyncio.run(fn(ctx, port, clients, seconds / 4))  # warm-up
                    rates, errs = [], 0
                    for _ in range(reps):
                        n, e, dt = asyncio.run(fn(ctx, port, clients, seconds))
                        rates.append(n / dt)
                        errs += e
                    out[f"{name}_per_s_{kind}"] = statistics.median(rates)
                    out[f"{name}_errors_{kind}"] = errs
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--skip-agent", action="store_true")
    parser.add_argument("--seal-records", type=int, default=10_000,
                        help="records between checkpoints in the sealed runs "
                             "(the writer's default)")
    args = parser.parse_args()
    reps = 3 if args.quick else 5
    results: dict[str, Any] = {
        "python": sys.version.split()[0], "cpus": os.cpu_count(),
        "permission": permission_checks(reps, 50_000 if args.quick else 1_000_000),
        "audit_8_threads": audit_figures(reps, 1_000 if args.quick else 10_000,
                                         100 if args.quick else 500),
        "audit_sealed_8_threads": sealed_figures(reps, 1_000 if args.quick else 10_000,
                                                 100 if args.quick else 500, args.seal_records),
    }
    if not args.skip_agent:
        results["agent_32_clients"] = agent_figures(reps if not args.quick else 1,
                                                    1.0 if args.quick else 3.0)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    p, a = results["permission"], results["audit_8_threads"]
    print(f"permission checks/s (cached):     {p['checks_per_s']:>12,.0f}   "
          f"({p['speedup']:.0f}x the uncached evaluation, {p['uncached_checks_per_s']:,.0f}/s)")
    print(f"stdlib logging JSON+FileHandler: {a['stdlib_logging_json_per_s']:>12,.0f} events/s")
    for mode in ("buffered", "flush", "fsync"):
        print(f"audit {mode:<8} 8 threads:       {a[f'{mode}_per_s']:>12,.0f} events/s   "
              f"({a[f'{mode}_vs_stdlib']:.2f}x stdlib logging)")
    sealed = results["audit_sealed_8_threads"]
    for mode in ("buffered", "fsync"):
        print(f"audit {mode:<8} sealed every {sealed['seal_records']:,.0f}: "
              f"{sealed[f'{mode}_sealed_per_s']:>10,.0f} events/s against "
              f"{sealed[f'{mode}_unsealed_per_s']:,.0f} unsealed "
              f"({sealed[f'{mode}_sealed_vs_unsealed']:.2f}x, median of paired runs)")
    if "agent_32_clients" in results:
        g = results["agent_32_clients"]
        for kind, label in (("reference", "bare aiohttp, same TLS"),
                            ("flush", "agent, audit flush"), ("buffered", "agent, audit buffered")):
            print(f"{label:<24} 32 clients: "
                  f"{g[f'handshakes_per_s_{kind}']:>7,.0f} mTLS handshakes/s "
                  f"({g[f'handshakes_errors_{kind}']:.0f} errors), "
                  f"{g[f'requests_per_s_{kind}']:>7,.0f} requests/s "
                  f"({g[f'requests_errors_{kind}']:.0f} errors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
