"""`exogpu audit verify|query`, `exogpu certs init|pin` and `exogpu agent`."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _audit_verify(args: argparse.Namespace) -> int:
    from exogpu.security.audit import AuditError
    from exogpu.security.audit_query import expand_paths
    from exogpu.security.audit_seal import load_anchor, load_public_key
    from exogpu.security.audit_verify import verify_files

    try:
        files = expand_paths(args.files)
        key = load_public_key(args.key) if args.key else None
        anchor = load_anchor(args.from_checkpoint) if args.from_checkpoint else None
    except (FileNotFoundError, AuditError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = verify_files(
        list(files),
        allow_torn_tail=args.allow_torn_tail,
        key=key,
        anchor=anchor,
        require_sealed=args.require_sealed,
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0 if report.ok else 1
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if not report.ok:
        print(f"FAILED: first bad record at {report.first_bad}")
        return 1
    span = (
        f"{report.records} records, seq {report.first_seq}..{report.last_seq} "
        f"in {len(report.files)} file(s); last hash {report.last_hash}"
    )
    if report.mode == "unsealed":
        print(
            f"OK (unsealed, hash chain only): {span}. No checkpoints: whoever can write "
            "the files could have rewritten them; only a sealed log verified with --key is "
            "evidence"
        )
        return 0
    cp = report.last_checkpoint or {}
    sealed = report.mode == "sealed"
    label = "sealed" if sealed else "checkpoints NOT verified: no --key"
    print(
        f"OK ({label}): {span}; {report.checkpoints} checkpoint(s) "
        f"{'verified' if sealed else 'consistent'}, {'sealed' if sealed else 'claimed'} up to "
        f"seq {report.sealed_upto} (last checkpoint: epoch {cp.get('epoch')}, "
        f"{cp.get('ts')}, {cp.get('reason')})"
    )
    if report.unsealed_records:
        print(
            f"UNSEALED: {report.unsealed_records} record(s) after the last checkpoint "
            f"(seq {(report.sealed_upto or 0) + 1}..{report.last_seq}) are not covered by a "
            "checkpoint: chained, but not verified"
        )
    return 0


def _audit_keygen(args: argparse.Namespace) -> int:
    from exogpu.security.audit_seal import create_seal_key

    try:
        public = create_seal_key(args.state, args.pub)
    except (FileExistsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"sealing key state (stays on this host, mode 0600): {args.state}")
    print(f"verification key (keep it apart from the log): {args.pub} ({public})")
    return 0


def _audit_checkpoint(args: argparse.Namespace) -> int:
    from exogpu.security.audit import AuditError
    from exogpu.security.audit_query import expand_paths, iter_records
    from exogpu.security.audit_seal import SEAL_TYPE, Checkpoint, export_checkpoint

    try:
        files = expand_paths(args.files)
        latest: Checkpoint | None = None
        for path in reversed(files):
            lines = path.read_bytes().split(b"\n")
            for rec, raw in zip(iter_records([path]), lines, strict=False):
                if rec["type"] == SEAL_TYPE:
                    latest = Checkpoint.from_record(rec, raw.decode(), str(path))
            if latest is not None:
                break
    except (FileNotFoundError, AuditError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if latest is None:
        print("error: no checkpoint in the log (is it sealed?)", file=sys.stderr)
        return 1
    text = json.dumps(export_checkpoint(latest), indent=1) + "\n"
    if args.out:
        Path(args.out).write_text(text)
        print(f"checkpoint seq {latest.seq} (epoch {latest.epoch}) written to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _audit_query(args: argparse.Namespace) -> int:
    from exogpu.security.audit import AuditError
    from exogpu.security.audit_query import query

    try:
        page = query(
            args.files,
            since=args.since,
            until=args.until,
            principal=args.principal,
            event_types=args.type,
            min_severity=args.min_severity,
            after_seq=args.after,
            limit=args.limit,
        )
    except (ValueError, FileNotFoundError, AuditError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(page.to_dict(), indent=2))
        return 0
    for rec in page.records:
        details = json.dumps(rec.get("details", {}), separators=(",", ":"))
        print(
            f"{rec.get('seq'):>8} {rec.get('ts')} {rec.get('severity'):<8} "
            f"{rec.get('type'):<26} {rec.get('principal') or '-':<12} "
            f"{rec.get('device') or '-':<8} {rec.get('outcome'):<8} {details}"
        )
    if page.next_after is not None:
        print(f"more: --after {page.next_after}", file=sys.stderr)
    return 0


def _certs_init(args: argparse.Namespace) -> int:
    from cryptography import x509

    from exogpu.security.tls import expiry_warnings, init_certs, spki_pin

    try:
        made = init_certs(args.dir, args.node, days=args.days)
    except (ValueError, FileExistsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"CA: {Path(args.dir) / 'ca.pem'}")
    for files in made:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        print(
            f"{files.cert.stem}: {files.cert} {files.key} pin {spki_pin(cert)} "
            f"expires {cert.not_valid_after_utc:%Y-%m-%d}"
        )
        for w in expiry_warnings([(str(files.cert), cert)]):
            print(f"warning: {w}", file=sys.stderr)
    return 0


def _certs_pin(args: argparse.Namespace) -> int:
    from cryptography import x509

    from exogpu.security.tls import spki_pin

    for path in args.certs:
        try:
            cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
        except (OSError, ValueError) as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            return 2
        print(f"{spki_pin(cert)}  {path}")
    return 0


def _network_probe_hook() -> Any:
    """One-time network-probe servers, when the network probe is part of this build."""
    try:
        importlib.import_module("exogpu.netprobe")
    except ImportError:
        return None
    from exogpu.agent.network_probe import NetworkProbeServers

    return NetworkProbeServers()


def _agent(args: argparse.Namespace) -> int:
    from exogpu.agent.server import AgentConfig, run_agent
    from exogpu.security.audit import AuditError
    from exogpu.security.rbac import PolicyError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = AgentConfig(
        certs=Path(args.certs),
        node=args.node,
        policy=Path(args.policy),
        audit_log=Path(args.audit_log),
        bind=args.bind,
        port=args.port,
        audit_durability=args.audit_durability,
        reload_interval=args.reload_interval,
        audit_seal_key=Path(args.audit_seal_key) if args.audit_seal_key else None,
        audit_checkpoint_export=(
            Path(args.audit_checkpoint_export) if args.audit_checkpoint_export else None
        ),
    )

    def ready(port: int) -> None:
        print(f"exogpu agent {args.node} listening on https://{args.bind}:{port}", flush=True)

    try:
        asyncio.run(run_agent(config, network_probe=_network_probe_hook(), ready=ready))
    except (PolicyError, FileNotFoundError, OSError, AuditError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser("audit", help="verify or query an audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_sub.add_parser(
        "verify",
        help="check the hash chain and checkpoints; names the first bad record",
        description="Check FILE and its rotated predecessors (FILE.1, FILE.2, ...): the "
        "hash chain, and with --key the signed checkpoints of a sealed log. Exit 0 when "
        "intact, 1 naming the first bad record, 2 when the key or checkpoint cannot be "
        "read. Records after the last checkpoint are reported as unsealed.",
    )
    verify.add_argument("files", nargs="+", metavar="FILE")
    verify.add_argument(
        "--key", metavar="PUB", help="the log's verification key (from `exogpu audit keygen`)"
    )
    verify.add_argument(
        "--from",
        dest="from_checkpoint",
        metavar="CHECKPOINT",
        help="an exported checkpoint to trust and start from (older files may be gone)",
    )
    verify.add_argument(
        "--require-sealed",
        action="store_true",
        help="fail when records after the last checkpoint are unsealed",
    )
    verify.add_argument(
        "--allow-torn-tail",
        action="store_true",
        help="accept an incomplete last line (left by a crash mid-write)",
    )
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=_audit_verify)

    keygen = audit_sub.add_parser(
        "keygen",
        help="create a sealing key for a new audit log",
        description="Write the host's sealing key state (it evolves at every checkpoint; "
        "the old key is erased) and the verification key, which belongs off the host.",
    )
    keygen.add_argument("--state", required=True, metavar="FILE", help="host side (0600)")
    keygen.add_argument("--pub", required=True, metavar="FILE", help="verification key (PEM)")
    keygen.set_defaults(func=_audit_keygen)

    checkpoint = audit_sub.add_parser(
        "checkpoint", help="export the latest checkpoint of a sealed log (to ship off the host)"
    )
    checkpoint.add_argument("files", nargs="+", metavar="FILE")
    checkpoint.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    checkpoint.set_defaults(func=_audit_checkpoint)

    q = audit_sub.add_parser("query", help="filter records across rotated files")
    q.add_argument("files", nargs="+", metavar="FILE")
    q.add_argument("--since", help="ISO time, inclusive")
    q.add_argument("--until", help="ISO time, exclusive")
    q.add_argument("--principal")
    q.add_argument("--type", action="append", help="event type (repeatable)")
    q.add_argument("--min-severity", choices=["debug", "info", "warning", "error", "critical"])
    q.add_argument("--after", type=int, metavar="SEQ", help="page after this sequence number")
    q.add_argument("--limit", type=int, default=100)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=_audit_query)

    certs = subparsers.add_parser("certs", help="make or inspect mutual-TLS certificates")
    certs_sub = certs.add_subparsers(dest="certs_command", required=True, metavar="ACTION")
    init = certs_sub.add_parser("init", help="create a CA (or reuse DIR's) and node certificates")
    init.add_argument("dir", metavar="DIR")
    init.add_argument("--node", action="append", required=True, metavar="NAME")
    init.add_argument("--days", type=int, default=365, help="validity of node certificates")
    init.set_defaults(func=_certs_init)
    pin = certs_sub.add_parser("pin", help="print the SPKI SHA-256 pin of certificates")
    pin.add_argument("certs", nargs="+", metavar="CERT")
    pin.set_defaults(func=_certs_pin)

    agent = subparsers.add_parser("agent", help="run the node agent (HTTPS, mutual TLS)")
    agent.add_argument("--certs", required=True, metavar="DIR")
    agent.add_argument("--node", required=True, metavar="NAME")
    agent.add_argument("--bind", default="127.0.0.1")
    agent.add_argument("--port", type=int, default=8443)
    agent.add_argument("--policy", required=True, metavar="FILE")
    agent.add_argument("--audit-log", required=True, metavar="FILE")
    agent.add_argument(
        "--audit-durability", choices=["buffered", "flush", "fsync"], default="flush"
    )
    agent.add_argument(
        "--audit-seal-key",
        metavar="FILE",
        help="seal the audit log with this key state (`exogpu audit keygen`)",
    )
    agent.add_argument(
        "--audit-checkpoint-export",
        metavar="FILE",
        help="keep the latest audit checkpoint here, for shipping off the host",
    )
    agent.add_argument(
        "--reload-interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how often certificates and the policy file are checked",
    )
    agent.set_defaults(func=_agent)
