"""The `exogpu audit query` and `exogpu certs` commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cryptography import x509

from exogpu.security.audit import AuditLog, EventType, Severity
from exogpu.security.tls import spki_pin


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exogpu", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_audit_query_command(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path, max_bytes=2048) as log:
        for i in range(30):
            log.log(EventType.ACCESS_DENIED if i % 5 == 0 else EventType.DEVICE_LIST,
                    Severity.WARNING if i % 5 == 0 else Severity.INFO,
                    principal="eve" if i % 5 == 0 else "alice")
    out = run("audit", "query", str(path), "--principal", "eve", "--json")
    assert out.returncode == 0, out.stderr
    page = json.loads(out.stdout)
    assert [r["seq"] for r in page["records"]] == [0, 5, 10, 15, 20, 25]
    out = run("audit", "query", str(path), "--min-severity", "warning", "--limit", "4")
    assert out.returncode == 0
    assert [line.split()[0] for line in out.stdout.splitlines()] == ["0", "5", "10", "15"]
    assert "more: --after 15" in out.stderr
    bad = run("audit", "query", str(tmp_path / "none.log"))
    assert bad.returncode == 2 and "no audit log" in bad.stderr


def test_certs_commands(tmp_path: Path) -> None:
    d = tmp_path / "certs"
    out = run("certs", "init", str(d), "--node", "node-a", "--node", "node-b")
    assert out.returncode == 0, out.stderr
    pin = spki_pin(x509.load_pem_x509_certificate((d / "node-a.pem").read_bytes()))
    assert f"pin {pin}" in out.stdout
    shown = run("certs", "pin", str(d / "node-b.pem"))
    assert shown.stdout.split()[0] == spki_pin(
        x509.load_pem_x509_certificate((d / "node-b.pem").read_bytes()))
    bad = run("certs", "init", str(d), "--node", "bad name")
    assert bad.returncode == 2 and "not a valid DNS name" in bad.stderr
