"""`exogpu probe`: measurement probes. `probe serve` and `probe net` measure
the network between two machines; further probes join as subcommands."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType

import exogpu
from exogpu import netprobe

_RATE_SUFFIXES = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}


def parse_rate(text: str) -> float:
    """Bits per second, with an optional k/M/G suffix (``100M``, ``1.5G``)."""
    body = text.strip().lower().removesuffix("bit/s").removesuffix("bps")
    suffix = body[-1:] if body[-1:] in ("k", "m", "g") else ""
    number = body[: len(body) - len(suffix)]
    try:
        value = float(number) * _RATE_SUFFIXES[suffix]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid rate {text!r}: expected bits per second such as 100M or 1.5G"
        ) from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"invalid rate {text!r}: must be non-negative")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    probe = subparsers.add_parser("probe", help="measure network links (serve, net)")
    probes = probe.add_subparsers(dest="probe_command", required=True, metavar="PROBE")

    serve = probes.add_parser(
        "serve",
        help="answer network probes from other machines",
        description="Serve network probes until interrupted. Only clients presenting the "
        f"token are served; without --token it is read from ${netprobe.TOKEN_ENV}, "
        "else a random one is made and printed.",
    )
    serve.add_argument("--bind", default="", help="address to listen on (default: all, IPv6+IPv4)")
    serve.add_argument(
        "--port",
        type=int,
        default=netprobe.DEFAULT_PORT,
        help=f"TCP and UDP port (default {netprobe.DEFAULT_PORT}; 0: any)",
    )
    serve.add_argument("--token", default=None, help="shared secret clients must present")
    serve.add_argument("--max-sessions", type=int, default=4, help="concurrent clients (default 4)")
    serve.add_argument(
        "--max-seconds",
        type=float,
        default=60.0,
        help="longest test a client may ask for (default 60)",
    )
    serve.set_defaults(func=run_serve)

    net = probes.add_parser(
        "net",
        help="measure throughput, RTT, jitter and loss to a probe server",
        description="Measure the path to a server started with `exogpu probe serve`: TCP "
        "throughput over parallel streams, TCP round-trip time, UDP jitter and loss.",
    )
    net.add_argument("target", metavar="HOST:PORT", help="server address; IPv6 as [addr]:port")
    net.add_argument(
        "--token", default=None, help=f"the server's token (default ${netprobe.TOKEN_ENV})"
    )
    net.add_argument("--seconds", type=float, default=3.0, help="length of each test (default 3)")
    net.add_argument(
        "--streams", type=int, default=1, help="parallel TCP streams; 0 skips (default 1)"
    )
    net.add_argument(
        "--udp-rate",
        type=parse_rate,
        default=10e6,
        metavar="R",
        help="UDP rate in bit/s, k/M/G suffixes allowed; 0 skips (default 10M)",
    )
    net.add_argument("--udp-size", type=int, default=1200, help="UDP payload bytes (default 1200)")
    net.add_argument("--json", action="store_true", help="print the result as JSON")
    net.set_defaults(func=run_net)


def run_serve(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get(netprobe.TOKEN_ENV)
    generated = token is None
    try:
        server = netprobe.Server(
            bind=args.bind,
            port=args.port,
            token=token or netprobe.new_token(),
            max_sessions=args.max_sessions,
            max_test_seconds=args.max_seconds,
        )
    except (netprobe.ProbeError, exogpu.InvalidArgument) as e:
        print(f"exogpu probe serve: {e}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    with server:
        print(f"exogpu probe server listening on {server.address} port {server.port}", flush=True)
        if generated:
            print(f"token: {server.token}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


def _format_rate(bps: float) -> str:
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.2f} {unit}"
    return f"{bps:.0f} bit/s"


def run_net(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get(netprobe.TOKEN_ENV)
    if not token:
        print(
            f"exogpu probe net: no token: pass --token or set ${netprobe.TOKEN_ENV}",
            file=sys.stderr,
        )
        return 2
    try:
        host, port = netprobe.parse_endpoint(args.target)
        result = netprobe.measure(
            host,
            port,
            token,
            seconds=args.seconds,
            streams=args.streams,
            udp_rate=args.udp_rate,
            udp_packet_size=args.udp_size,
        )
    except exogpu.InvalidArgument as e:
        print(f"exogpu probe net: {e}", file=sys.stderr)
        return 2
    except netprobe.ProbeError as e:
        print(f"exogpu probe net: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(result.to_json())
        return 0
    print(f"server      {result.address} port {result.port}")
    if result.bandwidth_bps is not None:
        retrans = f", {result.retransmits} retransmits" if result.retransmits is not None else ""
        print(
            f"throughput  {_format_rate(result.bandwidth_bps)} over {result.streams} "
            f"stream(s), {result.seconds:g} s{retrans}"
        )
    if result.rtt is not None:
        print(
            f"rtt         median {result.rtt.median:.1f} us, p99 {result.rtt.p99:.1f} us, "
            f"min {result.rtt.min:.1f} us ({result.rtt.samples} samples)"
        )
    if result.udp is not None:
        u = result.udp
        print(
            f"udp         {_format_rate(u.rate_bps)}: jitter {u.jitter_us:.1f} us, loss "
            f"{100 * u.loss:.3f} % ({u.lost} of {u.sent}), {u.reordered} reordered, "
            f"{u.duplicates} duplicated"
        )
    return 0
