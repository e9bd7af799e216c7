"""Sealing an audit log: signed checkpoints with a forward-evolving Ed25519 key.

Every so often (a number of records, a time, after a rotation, at close) the
writer appends a checkpoint record, type `system.audit_seal`, to the hash
chain. Its `details` are

    {"epoch": E, "key": pub_E, "next_key": pub_E+1, "prev_seal": <hash of the
     checkpoint before, or the genesis hash>, "reason": ..., "log_id": ...,
     "sig": Ed25519 signature by key E}

and the signature covers the checkpoint's seq, time and `prev` (the hash of the
record before it, so every record before it) together with those fields. The
key of epoch 0 is the log's verification key: kept apart from the log, it is all
`exogpu audit verify --key` needs. Each checkpoint names the key of the next
epoch; the writer then replaces its private key with that one and erases the old
one from disk, so whoever takes the host later holds no key that can sign a
past epoch again (after journald's Forward Secure Sealing; each checkpoint
chaining the last, after CloudTrail's digest files and RFC 6962 tree heads).

The host keeps a small state file (mode 0600): the current epoch's private key
and the last checkpoint line. It is written, fsynced and renamed into place
*before* that checkpoint reaches the log (and after the records it covers are
on disk), so a crash at any point leaves a state the writer can continue from;
the replaced file is overwritten with zeros through a descriptor held open.
Python cannot promise that no copy of the old key stays in process memory: the
key object is dropped and the bytes it came from are zeroed, which is the most
an interpreter allows.

A checkpoint can be exported (`export_checkpoint`, `exogpu audit checkpoint`):
a verifier handed one trusts it as the operator who shipped it off the host
did, and checks the log from there (records rotated away before it need not be
present; a log that ends before it was truncated).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from exogpu.bounded_input import load_json
from exogpu.security.audit import GENESIS, AuditError, format_ts

__all__ = [
    "CHECKPOINT_FORMAT",
    "SEAL_TYPE",
    "Checkpoint",
    "SealState",
    "create_seal_key",
    "export_checkpoint",
    "load_anchor",
    "load_public_key",
    "public_hex",
    "seal_message",
]

SEAL_TYPE = "system.audit_seal"
STATE_FORMAT = "exogpu-audit-seal-state/1"
CHECKPOINT_FORMAT = "exogpu-audit-checkpoint/1"
_DOMAIN = b"exogpu-audit-checkpoint/1\x00"
_SEAL_FIELDS = ("epoch", "key", "next_key", "prev_seal", "reason", "log_id", "sig")

_encode = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
).encode


def public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def _private_raw(key: Ed25519PrivateKey) -> bytearray:
    return bytearray(
        key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    )


def seal_message(seq: int, ts: str, prev: str, details: dict[str, Any]) -> bytes:
    """The bytes a checkpoint's signature covers: its place in the chain and its fields."""
    payload = {k: v for k, v in details.items() if k != "sig"}
    payload.update(seq=seq, ts=ts, prev=prev)
    return _DOMAIN + _encode(payload).encode()


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint record, checked for shape (not yet for trust)."""

    seq: int
    ts: str
    prev: str
    hash: str
    epoch: int
    key: str
    next_key: str
    prev_seal: str
    reason: str
    log_id: str
    sig: str
    line: str

    @classmethod
    def from_record(cls, rec: dict[str, Any], line: str, where: str) -> Checkpoint:
        details = rec.get("details")
        if not isinstance(details, dict):
            raise AuditError(f"{where}: checkpoint without details")
        extra = set(details) - set(_SEAL_FIELDS)
        if extra:
            raise AuditError(f"{where}: checkpoint with unknown field(s) {sorted(extra)}")
        for name in _SEAL_FIELDS:
            want: type = int if name == "epoch" else str
            value = details.get(name)
            if not isinstance(value, want) or isinstance(value, bool):
                raise AuditError(f"{where}: checkpoint field details.{name} is missing or not "
                                 f"a{'n integer' if want is int else ' string'}")
        for name in ("key", "next_key"):
            if len(details[name]) != 64 or not _is_hex(details[name]):
                raise AuditError(f"{where}: checkpoint field details.{name} is not a key")
        if len(details["sig"]) != 128 or not _is_hex(details["sig"]):
            raise AuditError(f"{where}: checkpoint field details.sig is not a signature")
        if details["epoch"] < 0:
            raise AuditError(f"{where}: checkpoint field details.epoch is negative")
        for name in ("seq", "ts", "prev", "hash"):
            if not isinstance(rec.get(name), int if name == "seq" else str):
                raise AuditError(f"{where}: checkpoint field {name} is missing or of a wrong type")
        return cls(
            seq=rec["seq"], ts=rec["ts"], prev=rec["prev"], hash=rec["hash"], line=line,
            **{k: details[k] for k in _SEAL_FIELDS},
        )

    def signature_ok(self, key_hex: str) -> bool:
        """Whether key `key_hex` signed this checkpoint."""
        details = {k: getattr(self, k) for k in _SEAL_FIELDS}
        message = seal_message(self.seq, self.ts, self.prev, details)
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_hex)).verify(
                bytes.fromhex(self.sig), message
            )
        except (InvalidSignature, ValueError):
            return False
        return True


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return text == text.lower()


# -- the host's evolving key ---------------------------------------------------------------
class SealState:
    """The writer's side: this epoch's private key and the last checkpoint written."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.epoch: int = data["epoch"]
        self.log_id: str = data["log_id"]
        self._private = bytearray.fromhex(data["private"])
        self._key = Ed25519PrivateKey.from_private_bytes(bytes(self._private))
        self.last_line: str | None = data["last_seal"]
        self.last: Checkpoint | None = None
        if self.last_line is not None:
            from exogpu.security.audit_records import parse_record

            rec = parse_record(self.last_line.encode(), f"{path}: last_seal")
            self.last = Checkpoint.from_record(rec, self.last_line, f"{path}: last_seal")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SealState:
        path = Path(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise AuditError(
                f"{path}: no sealing key (create one with `exogpu audit keygen`)"
            ) from None
        except OSError as exc:
            raise AuditError(f"{path}: cannot read the sealing key: {exc}") from None
        data = load_json(raw, what=str(path), error=AuditError, max_bytes=1 << 20)
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise AuditError(f"{path}: not an exogpu audit sealing key ({STATE_FORMAT})")
        checks: dict[str, Callable[[Any], bool]] = {
            "epoch": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
            "log_id": lambda v: isinstance(v, str) and len(v) == 32 and _is_hex(v),
            "private": lambda v: isinstance(v, str) and len(v) == 64 and _is_hex(v),
            "last_seal": lambda v: v is None or isinstance(v, str),
        }
        for name, ok in checks.items():
            if not ok(data.get(name)):
                raise AuditError(f"{path}: field {name} is missing or malformed")
        return cls(path, data)

    @property
    def public(self) -> str:
        return public_hex(self._key.public_key())

    def sign_next(
        self, seq: int, ts: float, prev: str, reason: str
    ) -> tuple[dict[str, Any], str, Ed25519PrivateKey]:
        """The details of checkpoint `seq` (signed by this epoch's key), its time text,
        and the key of the next epoch (not yet in force: see `advance`)."""
        following = Ed25519PrivateKey.generate()
        ts_text = format_ts(ts)
        details: dict[str, Any] = {
            "epoch": self.epoch,
            "key": self.public,
            "next_key": public_hex(following.public_key()),
            "prev_seal": self.last.hash if self.last is not None else GENESIS,
            "reason": reason,
            "log_id": self.log_id,
        }
        details["sig"] = self._key.sign(seal_message(seq, ts_text, prev, details)).hex()
        return details, ts_text, following

    def advance(self, following: Ed25519PrivateKey, line: str, checkpoint: Checkpoint) -> None:
        """Put the next epoch's key in force, durably, and erase this one."""
        new_private = _private_raw(following)
        _write_state(
            self.path,
            {
                "format": STATE_FORMAT,
                "epoch": self.epoch + 1,
                "log_id": self.log_id,
                "private": new_private.hex(),
                "last_seal": line,
            },
        )
        for i in range(len(self._private)):
            self._private[i] = 0
        self._private, self._key = new_private, following
        self.epoch += 1
        self.last_line, self.last = line, checkpoint


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_state(path: Path, data: dict[str, Any]) -> None:
    """Atomically replace the state file; then zero the replaced file's blocks."""
    tmp = path.with_name(path.name + ".new")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(json.dumps(data).encode())
        f.flush()
        os.fsync(f.fileno())
    try:
        old: int | None = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        old = None
    try:
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        if old is not None:
            size = os.fstat(old).st_size
            os.pwrite(old, b"\0" * size, 0)
            os.fsync(old)
    finally:
        if old is not None:
            os.close(old)


def create_seal_key(
    state_path: str | os.PathLike[str], public_path: str | os.PathLike[str]
) -> str:
    """A new sealing key: the host's state file (epoch 0) and the verification key
    (PEM) to keep apart from the log. Refuses to overwrite either. Returns the key in hex."""
    state_path, public_path = Path(state_path), Path(public_path)
    for p in (state_path, public_path):
        if p.exists():
            raise FileExistsError(f"{p} exists; a sealing key is never overwritten")
    key = Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    state_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    private = _private_raw(key)
    _write_state(
        state_path,
        {
            "format": STATE_FORMAT,
            "epoch": 0,
            "log_id": secrets.token_hex(16),
            "private": private.hex(),
            "last_seal": None,
        },
    )
    for i in range(len(private)):
        private[i] = 0
    fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return public_hex(key.public_key())


def load_public_key(path: str | os.PathLike[str]) -> str:
    """A verification key file (PEM, or the key's 64 hex digits) as hex."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AuditError(f"{path}: cannot read the verification key: {exc}") from None
    if len(raw) > 64 << 10:
        raise AuditError(f"{path}: not a verification key (too large)")
    text = raw.strip()
    if len(text) == 64 and _is_hex(text.decode("ascii", "replace")):
        return text.decode()
    try:
        key = serialization.load_pem_public_key(raw)
    except (ValueError, TypeError) as exc:
        raise AuditError(f"{path}: not a verification key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditError(f"{path}: not an Ed25519 key")
    return public_hex(key)


# -- exported checkpoints ------------------------------------------------------------------
def export_checkpoint(checkpoint: Checkpoint) -> dict[str, Any]:
    """A checkpoint as a document to ship off the host and hand to a verifier later."""
    return {
        "format": CHECKPOINT_FORMAT,
        "log_id": checkpoint.log_id,
        "epoch": checkpoint.epoch,
        "seq": checkpoint.seq,
        "ts": checkpoint.ts,
        "hash": checkpoint.hash,
        "line": checkpoint.line,
    }


def load_anchor(path: str | os.PathLike[str]) -> Checkpoint:
    """An exported checkpoint: well formed, hashing to what it says, signed by its key."""
    from exogpu.security.audit_records import parse_record
    from exogpu.security.audit_verify import record_hash_ok

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AuditError(f"{path}: cannot read the checkpoint: {exc}") from None
    doc = load_json(raw, what=str(path), error=AuditError, max_bytes=2 << 20)
    if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
        raise AuditError(f"{path}: not an exported checkpoint ({CHECKPOINT_FORMAT})")
    line = doc.get("line")
    if not isinstance(line, str):
        raise AuditError(f"{path}: field line is missing")
    rec = parse_record(line.encode(), f"{path}: line")
    if rec.get("type") != SEAL_TYPE:
        raise AuditError(f"{path}: field line is not a checkpoint record")
    checkpoint = Checkpoint.from_record(rec, line, f"{path}: line")
    if not record_hash_ok(line.encode(), checkpoint.hash) or doc.get("hash") != checkpoint.hash:
        raise AuditError(f"{path}: the checkpoint's hash does not match its contents")
    if doc.get("seq") != checkpoint.seq:
        raise AuditError(f"{path}: field seq does not match the checkpoint")
    if not checkpoint.signature_ok(checkpoint.key):
        raise AuditError(f"{path}: the checkpoint's signature does not verify")
    return checkpoint
