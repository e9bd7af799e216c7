"""`exogpu audit verify|query`, `exogpu certs init|pin` and `exogpu agent`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

    from exogpu.security.tls import RevocationError, expiry_warnings, issue_nodes, spki_pin

    try:
        made = issue_nodes(args.dir, args.node, days=args.days)
    except (ValueError, FileExistsError, OSError, RevocationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"CA: {Path(args.dir) / 'ca.pem'}")
    for issued in made:
        files = issued.files
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        print(
            f"{files.cert.stem}: {files.cert} {files.key} pin {spki_pin(cert)} "
            f"expires {cert.not_valid_after_utc:%Y-%m-%d}"
        )
        if issued.revoked is not None:
            print(f"{files.cert.stem}: revoked the certificate it replaces, serial "
                  f"{issued.revoked:x}")
        for w in expiry_warnings([(str(files.cert), cert)]):
            print(f"warning: {w}", file=sys.stderr)
    return 0


def _parse_serial(text: str) -> int:
    try:
        value = int(text.replace(":", ""), 16)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a hexadecimal serial") from None
    if not 0 < value < 1 << 160:  # RFC 5280: positive, at most 20 octets
        raise argparse.ArgumentTypeError(f"serial {text!r} is out of range")
    return value


def _certs_revoke(args: argparse.Namespace) -> int:
    from exogpu.security.tls import RevocationError, crl_number, node_files, revoke, serial_of

    serials: list[tuple[int, str]] = [(s, "by serial") for s in args.serial or []]
    try:
        for node in args.node or []:
            serials.append((serial_of(node_files(args.dir, node).cert), f"node {node}"))
        for path in args.cert or []:
            serials.append((serial_of(path), str(path)))
        crl = revoke(args.dir, [s for s, _ in serials], days=args.days)
    except (ValueError, OSError, RevocationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for serial, what in serials:
        print(f"revoked {serial:x} ({what})")
    print(
        f"CRL {Path(args.dir) / 'crl.pem'}: number {crl_number(crl)}, {len(crl)} revoked, "
        f"next update {crl.next_update_utc:%Y-%m-%d}; running agents take it at their next "
        "reload (or on SIGHUP)"
    )
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


def _raise_file_limit(connections: int) -> None:
    """Take the soft descriptor limit up to the hard one: the connection cap, not the
    soft default (often 1024), should be what turns clients away."""
    try:
        import resource
    except ImportError:  # Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard == resource.RLIM_INFINITY else min(hard, max(soft, connections + 256))
    if want != soft and (soft != resource.RLIM_INFINITY):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, 1 << 20), hard))


def _agent(args: argparse.Namespace) -> int:
    from exogpu.agent.gate import Limits
    from exogpu.agent.server import AgentConfig, run_agent
    from exogpu.security.audit import AuditError
    from exogpu.security.rbac import PolicyError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        limits = Limits(
            max_connections=args.max_connections,
            max_per_peer=args.max_per_peer,
            new_per_peer_per_second=args.new_per_peer,
            handshake_timeout=args.handshake_timeout,
            header_timeout=args.header_timeout,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _raise_file_limit(limits.max_connections)
    config = AgentConfig(
        certs=Path(args.certs),
        node=args.node,
        policy=Path(args.policy),
        audit_log=Path(args.audit_log),
        bind=args.bind,
        port=args.port,
        audit_durability=args.audit_durability,
        reload_interval=args.reload_interval,
        limits=limits,
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
    rev = certs_sub.add_parser(
        "revoke",
        help="take certificates back (the CA-signed CRL, DIR/crl.pem)",
        description="Add certificates to DIR's CRL, signed by the CA, with a higher CRL "
        "number. With nothing to revoke, refreshes the CRL (a new next update). Agents "
        "check every handshake against it and pick changes up without a restart.",
    )
    rev.add_argument("dir", metavar="DIR")
    rev.add_argument("--node", action="append", metavar="NAME", help="revoke NAME's current one")
    rev.add_argument("--serial", action="append", type=_parse_serial, metavar="HEX")
    rev.add_argument("--cert", action="append", metavar="PEM", help="revoke this certificate")
    rev.add_argument("--days", type=int, default=365, help="until the CRL's next update")
    rev.set_defaults(func=_certs_revoke)
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
        help="how often certificates, the CRL and the policy file are checked",
    )
    agent.add_argument("--max-connections", type=int, default=512, metavar="N",
                       help="connections open at once, in total")
    agent.add_argument("--max-per-peer", type=int, default=64, metavar="N",
                       help="connections open at once from one address")
    agent.add_argument("--new-per-peer", type=float, default=20.0, metavar="RATE",
                       help="new connections a second from one address (after a burst)")
    agent.add_argument("--handshake-timeout", type=float, default=10.0, metavar="SECONDS")
    agent.add_argument("--header-timeout", type=float, default=10.0, metavar="SECONDS",
                       help="from the handshake (or a request's first byte) to its headers")
    agent.set_defaults(func=_agent)
