"""The network probe from Python: loopback measurements over IPv4, IPv6 and
hostnames, the JSON document, typed errors, the server's lifecycle and the
`exogpu probe` command line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import exogpu
from exogpu import netprobe

# Where the exogpu under test lives (the source tree or site-packages), so
# subprocesses such as `ip netns exec ... python -m exogpu` import the same one.
PYTHON_DIR = str(Path(exogpu.__file__).resolve().parents[1])


def quick(server: netprobe.Server, host: str = "127.0.0.1", **kw: object) -> netprobe.NetResult:
    options: dict[str, object] = {"seconds": 0.3, "streams": 2, "udp_rate": 20e6,
                                  "rtt_seconds": 0.2, "rtt_samples": 300}
    options.update(kw)
    return netprobe.measure(host, server.port, server.token, **options)  # type: ignore[arg-type]


@pytest.fixture
def server() -> netprobe.Server:
    with netprobe.Server(bind="127.0.0.1", port=0, handshake_timeout=1.0) as s:
        yield s


def test_loopback_result_is_consistent(server: netprobe.Server) -> None:
    r = quick(server)
    assert r.address == "127.0.0.1" and r.port == server.port and r.streams == 2
    assert r.bandwidth_bps is not None and r.bandwidth_bps > 1e8
    assert r.bandwidth_bps == pytest.approx(r.bulk_bytes * 8 / r.bulk_elapsed_seconds)
    assert 0 < r.bulk_elapsed_seconds <= 0.3 + 0.2
    assert r.rtt is not None and r.rtt.samples == 300
    assert 0 < r.rtt.min <= r.rtt.median <= r.rtt.p99 <= r.rtt.max
    assert r.udp is not None
    # 20 Mbit/s of 1200-byte datagrams for 0.3 s: 625 of them.
    assert r.udp.sent == pytest.approx(625, abs=10)
    assert r.udp.received + r.udp.lost == r.udp.sent
    assert r.udp.loss < 0.02 and r.udp.duplicates == 0 and r.udp.jitter_us >= 0
    assert r.retransmits is not None and r.retransmits >= 0


def test_json_document_has_the_documented_fields(server: netprobe.Server) -> None:
    doc = json.loads(quick(server, streams=1).to_json())
    assert set(doc) >= {"bandwidth_bps", "streams", "seconds", "rtt_us", "jitter_us",
                        "udp_loss", "retransmits"}
    assert set(doc["rtt_us"]) == {"median", "p99", "min"}
    assert doc["streams"] == 1 and doc["seconds"] == 0.3
    assert 0 <= doc["udp_loss"] <= 1
    assert doc["bandwidth_bps"] == pytest.approx(
        doc["bulk"]["bytes"] * 8 / doc["bulk"]["elapsed_seconds"])


def test_skipped_tests_are_absent_not_zero(server: netprobe.Server) -> None:
    r = quick(server, streams=0, udp_rate=0)
    doc = r.to_dict()
    assert doc["bandwidth_bps"] is None and doc["udp_loss"] is None and doc["jitter_us"] is None
    assert "retransmits" not in doc
    assert doc["rtt_us"]["median"] > 0


def test_ipv6_literal_and_hostname() -> None:
    try:
        s = netprobe.Server(bind="::1", port=0)
    except netprobe.ProbeError as e:
        pytest.skip(f"no IPv6 loopback: {e}")
    with s:
        r = quick(s, host="::1", streams=1)
        assert r.address == "::1" and r.bandwidth_bps is not None
    with netprobe.Server(bind="", port=0) as dual:  # every address, IPv6 and IPv4
        assert quick(dual, host="localhost", streams=1, udp_rate=0).bandwidth_bps is not None
        assert quick(dual, host="127.0.0.1", streams=0).udp is not None


def test_wrong_token_is_a_typed_error_and_counted(server: netprobe.Server) -> None:
    with pytest.raises(netprobe.ProbeAuthenticationError, match="token rejected"):
        netprobe.measure("127.0.0.1", server.port, server.token + "x", seconds=0.1)
    assert issubclass(netprobe.ProbeAuthenticationError, netprobe.ProbeError)
    assert issubclass(netprobe.ProbeError, exogpu.Error)
    assert issubclass(netprobe.ProbeError, ConnectionError)
    # The server counts after answering: wait for the count, not the reply.
    deadline = time.monotonic() + 5
    while server.stats().auth_failures < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.stats().auth_failures == 1
    assert server.stats().sessions_started == 0


def test_bad_arguments_are_rejected_before_connecting(server: netprobe.Server) -> None:
    with pytest.raises(exogpu.InvalidArgument, match="seconds"):
        netprobe.measure("127.0.0.1", server.port, server.token, seconds=0)
    with pytest.raises(exogpu.InvalidArgument, match="udp_packet_size"):
        netprobe.measure("127.0.0.1", server.port, server.token, udp_packet_size=10)
    with pytest.raises(exogpu.InvalidArgument, match="port"):
        netprobe.measure("127.0.0.1", 70000, server.token)
    with pytest.raises(exogpu.InvalidArgument, match="token"):
        netprobe.Server(bind="127.0.0.1", port=0, token="x" * 300)
    assert server.stats().connections_accepted == 0


def test_unreachable_and_unresolvable_hosts() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    with pytest.raises(netprobe.ProbeError, match="refused"):
        netprobe.measure("127.0.0.1", free_port, "t", seconds=0.1)
    with pytest.raises(netprobe.ProbeError, match=r"no-such-host\.invalid"):
        netprobe.measure("no-such-host.invalid", 5310, "t", seconds=0.1)


def test_token_defaults_to_environment_then_random(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(netprobe.TOKEN_ENV, "from-the-environment")
    with netprobe.Server(bind="127.0.0.1", port=0) as s:
        assert s.token == "from-the-environment"
    monkeypatch.delenv(netprobe.TOKEN_ENV)
    with netprobe.Server(bind="127.0.0.1", port=0) as a, \
            netprobe.Server(bind="127.0.0.1", port=0) as b:
        assert len(a.token) >= 32 and a.token != b.token


def test_measure_releases_the_gil(server: netprobe.Server) -> None:
    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    try:
        quick(server, streams=1, udp_rate=0, seconds=0.5)
    finally:
        done.set()
        t.join()
    assert ticks > 100  # the counter ran through most of the 0.7 s call


def test_close_is_prompt_and_idempotent() -> None:
    s = netprobe.Server(bind="127.0.0.1", port=0)
    idle = socket.create_connection(("127.0.0.1", s.port))
    start = time.monotonic()
    s.close()
    assert time.monotonic() - start < 2
    assert not s.running
    s.close()
    idle.close()
    with pytest.raises(netprobe.ProbeError):
        netprobe.measure("127.0.0.1", s.port, s.token, seconds=0.1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("host:1", ("host", 1)), ("10.0.0.1:5310", ("10.0.0.1", 5310)),
     ("[::1]:80", ("::1", 80)), ("[fe80::1%eth0]:9", ("fe80::1%eth0", 9))],
)
def test_parse_endpoint(text: str, expected: tuple[str, int]) -> None:
    assert netprobe.parse_endpoint(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("::1:80", "brackets"), ("host", "missing port"), ("host:0", "1 to 65535"),
     ("host:http", "1 to 65535"), ("[::1", "missing"), (":80", "missing host"), ("", "empty")],
)
def test_parse_endpoint_rejects(text: str, message: str) -> None:
    with pytest.raises(exogpu.InvalidArgument, match=message):
        netprobe.parse_endpoint(text)


def _cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = PYTHON_DIR + os.pathsep + env.get("PYTHONPATH", "")
    env.pop(netprobe.TOKEN_ENV, None)
    return env


def test_cli_serve_prints_a_token_and_net_reports_json() -> None:
    env = _cli_env()
    serve = subprocess.Popen(
        [sys.executable, "-m", "exogpu", "probe", "serve", "--bind", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert serve.stdout is not None
        listening = serve.stdout.readline().split()
        token_line = serve.stdout.readline().split()
        assert listening[:4] == ["exogpu", "probe", "server", "listening"]
        assert token_line[0] == "token:"
        port, token = listening[-1], token_line[1]
        net = [sys.executable, "-m", "exogpu", "probe", "net", f"127.0.0.1:{port}",
               "--seconds", "0.3", "--streams", "2", "--udp-rate", "5M"]
        ok = subprocess.run([*net, "--token", token, "--json"], capture_output=True, text=True,
                            env=env, timeout=30)
        assert ok.returncode == 0, ok.stderr
        doc = json.loads(ok.stdout)
        assert doc["streams"] == 2 and doc["bandwidth_bps"] > 0 and doc["udp_loss"] is not None
        assert doc["udp"]["rate_bps"] == 5e6
        via_env = subprocess.run(net, capture_output=True, text=True, timeout=30,
                                 env={**env, netprobe.TOKEN_ENV: token})
        assert via_env.returncode == 0 and "throughput" in via_env.stdout
        bad = subprocess.run([*net, "--token", "nope"], capture_output=True, text=True, env=env,
                             timeout=30)
        assert bad.returncode == 1 and "token rejected" in bad.stderr
        missing = subprocess.run(net, capture_output=True, text=True, env=env, timeout=30)
        assert missing.returncode == 2 and "no token" in missing.stderr
    finally:
        serve.terminate()
        assert serve.wait(timeout=10) == 0  # SIGTERM closes the server cleanly


def test_cli_rejects_malformed_rates() -> None:
    out = subprocess.run([sys.executable, "-m", "exogpu", "probe", "net", "h:1", "--token", "t",
                          "--udp-rate", "fast"], capture_output=True, text=True, env=_cli_env())
    assert out.returncode == 2 and "invalid rate 'fast'" in out.stderr
