"""Handshakes per second of the node agent with the revocation check on and off.

For each case an agent runs in its own process on loopback and `openssl s_time
-new` (full TLS 1.3 handshakes with a client certificate, no resumption) runs
against it from `--parallel` processes for `--seconds`. The rate is the agent's
own count of completed handshakes (its metrics, read as admin before and after)
divided by the time, so it counts handshakes the server finished, not ones the
client merely sent. Cases: revocation off; on with an empty CRL; on with a CRL
of `--revoked` serials (the client's own not among them).

    python benchmarks/handshake_revocation.py

Prints one JSON object. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

POLICY = """
[[principals]]
name = "root"
roles = ["admin"]
devices = ["*"]
"""


def _serve(root: str, check: bool, ready: Any) -> None:
    from exogpu.agent.gate import Limits
    from exogpu.agent.server import AgentConfig, run_agent

    # Every handshake comes from 127.0.0.1, so the per-address rate of new
    # connections (a defence measured by the soak, not here) is lifted.
    config = AgentConfig(certs=Path(root) / "certs", node="node-a",
                         policy=Path(root) / "policy.toml", audit_log=Path(root) / "audit.log",
                         audit_durability="buffered", check_revocation=check,
                         reload_interval=3600,
                         limits=Limits(max_per_peer=4096, new_per_peer_per_second=50_000.0))
    asyncio.run(run_agent(config, ready=ready.put))


def _handshakes(root: Path, port: int) -> float:
    from exogpu.agent import AgentClient

    with AgentClient(root / "certs", "root", "node-a", port) as c:
        text = c.metrics()
    m = re.search(r'^exogpu_agent_tls_handshakes_total\{outcome="ok"\} (\S+)$', text, re.M)
    assert m, text
    return float(m.group(1))


def _case(root: Path, check: bool, seconds: float, parallel: int) -> dict[str, Any]:
    ready: Any = mp.Queue()
    proc = mp.Process(target=_serve, args=(str(root), check, ready))
    proc.start()
    try:
        port = int(ready.get(timeout=60))
        certs = root / "certs"
        base = ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new",
                "-cert", str(certs / "root.pem"), "-key", str(certs / "root.key"),
                "-CAfile", str(certs / "ca.pem")]
        cmd = [*base, "-time", str(int(seconds))]
        subprocess.run([*base, "-time", "1"], capture_output=True, timeout=60,
                       check=False)  # warm-up
        before = _handshakes(root, port)
        start = time.monotonic()
        clients = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for _ in range(parallel)]
        for c in clients:
            c.wait(seconds + 60)
        elapsed = time.monotonic() - start
        done = _handshakes(root, port) - before - 1  # less the metrics call's own
        return {"handshakes": int(done), "seconds": round(elapsed, 2),
                "per_second": round(done / elapsed, 1)}
    finally:
        proc.terminate()
        proc.join(30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--revoked", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not shutil.which("openssl"):
        print("needs openssl", file=sys.stderr)
        return 1

    from exogpu.security.tls import init_certs, revoke

    root = Path(tempfile.mkdtemp(prefix="handshake-revocation-"))
    init_certs(root / "certs", ["node-a", "root"])
    (root / "policy.toml").write_text(POLICY)
    crl = root / "certs" / "crl.pem"
    empty = crl.read_bytes()
    revoke(root / "certs", range(1 << 40, (1 << 40) + args.revoked))
    big = crl.read_bytes()
    cases: dict[str, list[dict[str, Any]]] = {"off": [], "on, empty CRL": [],
                                              f"on, {args.revoked} revoked": []}
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits all
        crl.write_bytes(empty)
        cases["off"].append(_case(root, False, args.seconds, args.parallel))
        cases["on, empty CRL"].append(_case(root, True, args.seconds, args.parallel))
        crl.write_bytes(big)
        cases[f"on, {args.revoked} revoked"].append(
            _case(root, True, args.seconds, args.parallel))
    result = {
        "client": f"openssl s_time -new, {args.parallel} in parallel, {args.seconds} s each",
        "crl_bytes": {"empty": len(empty), "big": len(big)},
        "median_handshakes_per_second": {
            k: sorted(r["per_second"] for r in v)[len(v) // 2] for k, v in cases.items()},
        "runs": cases,
    }
    print(json.dumps(result, indent=2))
    shutil.rmtree(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
