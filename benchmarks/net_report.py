"""The network probe's figures, each against a reference run in the same
script, interleaved run by run, medians reported:

1. loopback TCP throughput with 1 and 4 streams, exogpu vs iperf3;
2. loopback RTT median, exogpu's ping-pong vs a plain C ping-pong of the
   same 16-byte message (benchmarks/native/tcp_pingpong.c, built here);
3. links whose properties are set: a veth pair between two namespaces shaped
   with tc tbf (root only), and the impairment relay of the tests (delay
   each way, datagram drop): what each was set to and what the probe said.

    python benchmarks/net_report.py [--runs 7] [--seconds 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))  # the network lab helpers
from exogpu import netprobe  # noqa: E402
from netlab import ImpairmentRelay, netns_unavailable_reason, veth_lab  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def iperf3_bps(port: int, streams: int, seconds: float) -> float:
    out = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds),
                          "-P", str(streams), "-J"], capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"])


def throughput(runs: int, seconds: float) -> list[dict[str, Any]]:
    if shutil.which("iperf3") is None:
        print("iperf3 not installed: throughput comparison skipped")
        return []
    port = free_port()
    iperf = subprocess.Popen(["iperf3", "-s", "-p", str(port)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    rows = []
    try:
        time.sleep(0.3)
        with netprobe.Server(bind="127.0.0.1", port=0) as server:
            for streams in (1, 4):
                ours, theirs = [], []
                for _ in range(runs):  # interleaved, so both see the same machine load
                    r = netprobe.measure("127.0.0.1", server.port, server.token,
                                         seconds=seconds, streams=streams, udp_rate=0,
                                         rtt_seconds=0)
                    assert r.bandwidth_bps is not None
                    ours.append(r.bandwidth_bps)
                    theirs.append(iperf3_bps(port, streams, seconds))
                rows.append({"streams": streams, "exogpu_bps": statistics.median(ours),
                             "iperf3_bps": statistics.median(theirs),
                             "ratio": statistics.median(ours) / statistics.median(theirs),
                             "exogpu_runs": ours, "iperf3_runs": theirs})
    finally:
        iperf.terminate()
        iperf.wait()
    return rows


def rtt(runs: int, samples: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "tcp_pingpong"
        source = ROOT / "benchmarks" / "native" / "tcp_pingpong.c"
        subprocess.run(["cc", "-O2", "-o", str(exe), str(source)], check=True)
        ours, theirs, ours_min, theirs_min = [], [], [], []
        with netprobe.Server(bind="127.0.0.1", port=0) as server:
            for _ in range(runs):
                r = netprobe.measure("127.0.0.1", server.port, server.token, streams=0,
                                     udp_rate=0, rtt_seconds=10, rtt_samples=samples)
                assert r.rtt is not None
                ours.append(r.rtt.median)
                ours_min.append(r.rtt.min)
                median, minimum = map(float, subprocess.run(
                    [str(exe), str(samples)], capture_output=True, text=True, check=True
                ).stdout.split())
                theirs.append(median)
                theirs_min.append(minimum)
    return {"samples_per_run": samples, "exogpu_median_us": statistics.median(ours),
            "c_pingpong_median_us": statistics.median(theirs),
            "ratio": statistics.median(ours) / statistics.median(theirs),
            "exogpu_min_us": min(ours_min), "c_pingpong_min_us": min(theirs_min)}


def shaped(rates_mbit: list[int], seconds: float) -> list[dict[str, Any]]:
    reason = netns_unavailable_reason()
    if reason is not None:
        print(f"shaped link skipped: {reason}")
        return []
    rows = []
    for rate in rates_mbit:
        with veth_lab() as lab:
            lab.shape(lab.client_ns, lab.client_dev, f"{rate}mbit")
            # The subprocesses run the same interpreter, so they import the
            # same exogpu as this script: the installed package, as a user has it.
            env = {**os.environ, netprobe.TOKEN_ENV: "report"}
            server = lab.popen(lab.server_ns, [sys.executable, "-m", "exogpu", "probe", "serve",
                                               "--bind", lab.server_ip, "--port", "5310"],
                               stdout=subprocess.PIPE, env=env)
            try:
                assert server.stdout is not None
                server.stdout.readline()
                out = lab.run(lab.client_ns, [sys.executable, "-m", "exogpu", "probe", "net",
                                              f"{lab.server_ip}:5310", "--seconds", str(seconds),
                                              "--udp-rate", str(rate * 1e6 / 10), "--json"],
                              timeout=120, env=env)
                doc = json.loads(out.stdout)
            finally:
                server.terminate()
                server.wait()
        rows.append({"tbf_rate_bps": rate * 1e6, "reported_bps": doc["bandwidth_bps"],
                     "ratio": doc["bandwidth_bps"] / (rate * 1e6),
                     "retransmits": doc.get("retransmits"), "udp_loss": doc["udp_loss"]})
    return rows


def impaired(delays_ms: list[float], drop: float) -> list[dict[str, Any]]:
    rows = []
    with netprobe.Server(bind="127.0.0.1", port=0) as server:
        base = netprobe.measure("127.0.0.1", server.port, server.token, streams=0, udp_rate=0,
                                rtt_seconds=0.5)
        assert base.rtt is not None
        for delay in delays_ms:
            with ImpairmentRelay(("127.0.0.1", server.port), delay=delay / 1e3,
                                 drop=drop) as relay:
                r = netprobe.measure("127.0.0.1", relay.port, server.token, streams=0,
                                     udp_rate=110_000 * 64 * 8 / 2.5, udp_packet_size=64,
                                     seconds=2.5, rtt_seconds=1.5)
            assert r.rtt is not None and r.udp is not None
            rows.append({"delay_each_way_ms": delay, "set_rtt_added_ms": 2 * delay,
                         "reported_rtt_added_ms": (r.rtt.median - base.rtt.median) / 1e3,
                         "set_drop": drop, "reported_loss": r.udp.loss,
                         "relay_dropped": relay.udp_dropped, "probe_lost": r.udp.lost,
                         "datagrams": r.udp.sent, "jitter_us": r.udp.jitter_us})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    report: dict[str, Any] = {"throughput": throughput(args.runs, args.seconds)}
    for row in report["throughput"]:
        print(f"loopback TCP, {row['streams']} stream(s): exogpu "
              f"{row['exogpu_bps'] / 1e9:.2f} Gbit/s, iperf3 {row['iperf3_bps'] / 1e9:.2f} "
              f"Gbit/s, ratio {row['ratio']:.3f}  (medians of {args.runs}, {args.seconds:g} s)")
    report["rtt"] = rtt(args.runs, 2000)
    r = report["rtt"]
    print(f"loopback RTT median: exogpu {r['exogpu_median_us']:.2f} us, C ping-pong "
          f"{r['c_pingpong_median_us']:.2f} us, ratio {r['ratio']:.3f}  "
          f"(min {r['exogpu_min_us']:.2f} vs {r['c_pingpong_min_us']:.2f} us)")
    report["shaped"] = shaped([100, 200, 500], args.seconds)
    for row in report["shaped"]:
        print(f"tbf {row['tbf_rate_bps'] / 1e6:.0f} Mbit/s: reported "
              f"{row['reported_bps'] / 1e6:.1f} Mbit/s TCP payload ({row['ratio']:.3f})")
    report["impaired"] = impaired([10.0, 20.0], 0.01)
    for row in report["impaired"]:
        print(f"relay {row['delay_each_way_ms']:g} ms each way, drop "
              f"{100 * row['set_drop']:g} %: RTT +{row['reported_rtt_added_ms']:.2f} ms "
              f"(set +{row['set_rtt_added_ms']:g}), loss {100 * row['reported_loss']:.3f} % "
              f"({row['probe_lost']} lost / relay dropped {row['relay_dropped']} of "
              f"{row['datagrams']})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
