"""Soak of the node agent on loopback: valid clients, a no-certificate flood and
half-open connections at the same time.

The agent runs as the real command (`exogpu agent`, audit durability `flush`) in
its own process. Worker processes run, for `--seconds`:

- `--clients` valid clients (threads, keep-alive, mutual TLS), each one GET
  /v1/backends every `--think` seconds, from 127.0.1.x; every latency is kept;
- a no-certificate flood: threads doing TLS handshakes without a certificate, as
  fast as they can, from 127.0.2.x;
- half-open connections: TCP connections that send nothing, or the first bytes
  of a ClientHello and then nothing, from 127.0.3.x, reopened as the agent cuts
  them.

Then the agent is stopped and its audit log read back: every valid request must
be there as a success, every flood and half-open connection as a refusal
(summing the coalesced counts), the log must verify, and nothing be dropped.

    python benchmarks/agent_soak.py --seconds 60 --clients 200

Prints one JSON object. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REQUEST = b"GET /v1/backends HTTP/1.1\r\nHost: node-a\r\n\r\n"
POLICY = """
[[principals]]
name = "client"
roles = ["user"]
devices = ["*"]

[[principals]]
name = "root"
roles = ["admin"]
devices = ["*"]
"""


def _read_response(tls: ssl.SSLSocket, buf: bytearray) -> None:
    """Read one HTTP/1.1 response with a Content-Length off a kept-alive socket."""
    while b"\r\n\r\n" not in buf:
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    m = re.search(rb"(?i)content-length: *(\d+)", head)
    length = int(m.group(1)) if m else 0
    while len(rest) < length:
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError("closed within the body")
        rest += chunk
    buf[:] = rest[length:]


def _valid_worker(certs: str, port: int, source: str, threads: int, think: float,
                  stop_at: float, out: Any) -> None:
    ctx = ssl.create_default_context(cafile=f"{certs}/ca.pem")
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(f"{certs}/client.pem", f"{certs}/client.key")
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        time.sleep(think * index / threads)  # spread the clients' phases
        tls: ssl.SSLSocket | None = None
        buf = bytearray()
        mine: list[float] = []
        while time.monotonic() < stop_at:
            start = time.monotonic()
            try:
                if tls is None:
                    raw = socket.create_connection(("127.0.0.1", port), timeout=30,
                                                   source_address=(source, 0))
                    tls = ctx.wrap_socket(raw, server_hostname="node-a")
                    buf = bytearray()
                tls.sendall(REQUEST)
                _read_response(tls, buf)
                mine.append(time.monotonic() - start)
            except (OSError, ConnectionError) as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                if tls is not None:
                    tls.close()
                tls = None
            time.sleep(max(0.0, think - (time.monotonic() - start)))
        if tls is not None:
            tls.close()
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    out.put({"latencies": latencies, "errors": errors})


def _flood_worker(certs: str, port: int, source: str, threads: int, stop_at: float,
                  out: Any) -> None:
    ctx = ssl.create_default_context(cafile=f"{certs}/ca.pem")
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    counts = [0] * threads

    def run(index: int) -> None:
        while time.monotonic() < stop_at:
            try:
                raw = socket.create_connection(("127.0.0.1", port), timeout=10,
                                               source_address=(source, 0))
            except OSError:
                continue  # never reached the agent: not counted
            counts[index] += 1
            try:
                with ctx.wrap_socket(raw, server_hostname="node-a") as tls:
                    tls.sendall(REQUEST)
                    tls.recv(100)
            except OSError:
                pass
            finally:
                raw.close()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    out.put({"flood": {source: sum(counts)}})


def _half_open_worker(port: int, source: str, connections: int, stop_at: float,
                      out: Any) -> None:
    import selectors

    sel = selectors.DefaultSelector()
    made = 0

    def open_one(i: int) -> None:
        nonlocal made
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10,
                                         source_address=(source, 0))
        except OSError:
            return
        made += 1
        if i % 2:
            s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello's start
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)

    for i in range(connections):
        open_one(i)
    while time.monotonic() < stop_at:
        for key, _ in sel.select(timeout=0.5):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:  # cut by the agent: open another
                sel.unregister(sock)
                sock.close()
                if time.monotonic() < stop_at:
                    open_one(key.data)
    for key in list(sel.get_map().values()):
        sel.unregister(key.fileobj)
        key.fileobj.close()  # type: ignore[union-attr]
    out.put({"half_open": {source: made}})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--think", type=float, default=1.0, help="seconds between a client's requests")
    ap.add_argument("--flood-threads", type=int, default=8)
    ap.add_argument("--half-open", type=int, default=128)
    ap.add_argument("--keep", action="store_true", help="keep the audit log and certificates")
    args = ap.parse_args()

    from exogpu.security.audit_verify import verify_files
    from exogpu.security.tls import init_certs

    root = Path(tempfile.mkdtemp(prefix="agent-soak-"))
    certs = root / "certs"
    init_certs(certs, ["node-a", "client", "root"])
    (root / "policy.toml").write_text(POLICY)
    log = root / "audit.log"
    env = dict(os.environ)  # the exogpu this script imported
    agent = subprocess.Popen(
        [sys.executable, "-m", "exogpu", "agent", "--certs", str(certs), "--node", "node-a",
         "--port", "0", "--policy", str(root / "policy.toml"), "--audit-log", str(log),
         "--max-connections", "2048"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert agent.stdout is not None and agent.stderr is not None
    m = re.search(r"listening on https://127\.0\.0\.1:(\d+)", agent.stdout.readline())
    if not m:
        print(agent.stderr.read(), file=sys.stderr)
        return 1
    port = int(m.group(1))

    out: Any = mp.Queue()
    stop_at = time.monotonic() + args.seconds
    procs = []
    per_process = 50  # valid clients per process (and per source address: under the
    # per-peer cap of 64)
    for w in range((args.clients + per_process - 1) // per_process):
        n = min(per_process, args.clients - w * per_process)
        procs.append(mp.Process(target=_valid_worker, args=(
            str(certs), port, f"127.0.1.{w + 1}", n, args.think, stop_at, out)))
    for w in range(2):
        procs.append(mp.Process(target=_flood_worker, args=(
            str(certs), port, f"127.0.2.{w + 1}", args.flood_threads // 2, stop_at, out)))
    for w in range(2):
        procs.append(mp.Process(target=_half_open_worker, args=(
            port, f"127.0.3.{w + 1}", args.half_open // 2, stop_at, out)))
    began = time.monotonic()
    for p in procs:
        p.start()
    results = [out.get(timeout=args.seconds + 120) for _ in procs]
    for p in procs:
        p.join(30)
    elapsed = time.monotonic() - began
    agent.send_signal(signal.SIGTERM)
    rc = agent.wait(60)
    stderr = agent.stderr.read()

    latencies = sorted(x for r in results for x in r.get("latencies", []))
    errors = [e for r in results for e in r.get("errors", [])]
    flood = {k: v for r in results for k, v in r.get("flood", {}).items()}
    half_open = {k: v for r in results for k, v in r.get("half_open", {}).items()}
    records = [json.loads(x) for x in log.read_text().splitlines()]
    served = sum(r["type"] == "system.api_request" and r["outcome"] == "success"
                 for r in records)
    refused_by_peer: dict[str, int] = {}
    for r in records:
        if r["details"].get("refused"):
            peer = r["details"]["remote"]
            refused_by_peer[peer] = refused_by_peer.get(peer, 0) + r["details"]["count"]
    report = verify_files([log])
    seqs = [r["seq"] for r in records]
    result = {
        "seconds": round(elapsed, 1),
        "valid_clients": args.clients,
        "valid_requests": len(latencies),
        "valid_errors": len(errors),
        "valid_error_examples": errors[:5],
        "latency_ms": {
            "median": round(statistics.median(latencies) * 1e3, 2) if latencies else None,
            "p99": round(latencies[int(len(latencies) * 0.99)] * 1e3, 2) if latencies else None,
            "max": round(latencies[-1] * 1e3, 2) if latencies else None,
        },
        "flood_connections": flood,
        "half_open_connections": half_open,
        "audit": {
            "records": len(records),
            "successes_logged": served,
            "successes_match": served == len(latencies),
            "refusals_logged_by_peer": {k: v for k, v in refused_by_peer.items()
                                        if k in flood or k in half_open},
            "refusals_match": all(refused_by_peer.get(k, 0) == v
                                  for k, v in {**flood, **half_open}.items()),
            "seq_contiguous": seqs == list(range(seqs[0], seqs[0] + len(seqs))),
            "verify_ok": report.ok,
            "dropped_records": sum(r["type"] == "system.audit_dropped" for r in records),
            "last": records[-1]["type"],
        },
        "agent_exit": rc,
        "agent_stderr_bytes": len(stderr),
        "agent_tracebacks": stderr.count("Traceback"),
    }
    print(json.dumps(result, indent=2))
    if args.keep:
        print(f"kept {root}", file=sys.stderr)
    else:
        shutil.rmtree(root)
    ok = (not errors and served == len(latencies) and result["audit"]["refusals_match"]
          and report.ok and rc == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
