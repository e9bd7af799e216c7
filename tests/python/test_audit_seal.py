"""A sealed audit log against someone who can write every file of it (and, later,
read the host's current key): each class of tampering fails `verify --key`, naming
the first bad place; what cannot be vouched for is reported as unsealed."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exogpu.security.audit import AuditError, AuditLog, EventType, log_files
from exogpu.security.audit_seal import (
    SEAL_TYPE,
    Checkpoint,
    create_seal_key,
    load_anchor,
    load_public_key,
    public_hex,
    seal_message,
)
from exogpu.security.audit_verify import VerifyReport, verify_files

Record = dict[str, Any]


@dataclass
class Sealed:
    path: Path
    state: Path
    pub: Path
    key: str
    exports: list[dict[str, Any]]

    def verify(self, **kw: Any) -> VerifyReport:
        return verify_files(log_files(self.path), key=self.key, **kw)

    def records(self) -> list[Record]:
        return [json.loads(x) for f in log_files(self.path) for x in f.read_text().splitlines()]

    def anchor(self, export: dict[str, Any], tmp: Path) -> Checkpoint:
        f = tmp / f"checkpoint-{export['seq']}.json"
        f.write_text(json.dumps(export))
        return load_anchor(f)


def make_sealed(root: Path, n: int = 60, **kw: Any) -> Sealed:
    root.mkdir(parents=True, exist_ok=True)
    state, pub = root / "seal.state", root / "seal.pub"
    create_seal_key(state, pub)
    exports: list[dict[str, Any]] = []
    opts: dict[str, Any] = {"max_bytes": 3000, "retention": 50, "seal_records": 5}
    opts.update(kw)
    with AuditLog(root / "audit.log", seal_key=state, on_checkpoint=exports.append,
                  **opts) as log:
        for i in range(n):
            log.log(EventType.MEMORY_ALLOCATE, principal="alice", device="cpu:0",
                    details={"nbytes": 4096 * i})
    return Sealed(root / "audit.log", state, pub, load_public_key(pub), exports)


@pytest.fixture
def sealed(tmp_path: Path) -> Sealed:
    s = make_sealed(tmp_path / "log", n=62)  # not a multiple of 5: the last checkpoint is "close"
    assert len(log_files(s.path)) >= 4
    report = s.verify()
    assert report.ok and report.mode == "sealed", report.first_bad
    return s


# -- an attacker's tools: rewrite records and recompute the whole chain -----------------
def line_of(rec: Record) -> str:
    body = {k: v for k, v in rec.items() if k != "hash"}
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return text[:-1] + f',"hash":"{digest}"}}'


def rechain(path: Path, change: Callable[[list[Record]], list[Record]],
            renumber: bool = True) -> None:
    """Apply `change` to all records, then renumber and rechain everything, writing the
    records back over the same files (each keeps its count, the last takes the rest)."""
    files = log_files(path)
    counts = [len(f.read_text().splitlines()) for f in files]
    recs = change([json.loads(x) for f in files for x in f.read_text().splitlines()])
    prev = recs[0]["prev"] if recs else "0" * 64
    base = recs[0]["seq"] if recs else 0
    lines = []
    for i, rec in enumerate(recs):
        if renumber:
            rec["seq"] = base + i
        rec["prev"] = prev
        line = line_of(rec)
        prev = json.loads(line)["hash"]
        lines.append(line + "\n")
    at = 0
    for k, f in enumerate(files):
        take = counts[k] if k < len(files) - 1 else len(lines) - at
        f.write_text("".join(lines[at : at + take]))
        at += take


def seal_seqs(s: Sealed) -> list[int]:
    return [r["seq"] for r in s.records() if r["type"] == SEAL_TYPE]


def must_fail(report: VerifyReport, *fragments: str) -> None:
    assert report.first_bad is not None, "tampering was not detected"
    for fragment in fragments:
        assert fragment in report.first_bad.problem, report.first_bad


def where(s: Sealed, seq: int) -> tuple[str, int]:
    for f in log_files(s.path):
        for i, x in enumerate(f.read_text().splitlines(), start=1):
            if json.loads(x)["seq"] == seq:
                return str(f), i
    raise AssertionError(seq)


# -- the honest log ---------------------------------------------------------------------
def test_sealed_log_verifies_with_its_key(sealed: Sealed) -> None:
    report = sealed.verify(require_sealed=True)
    recs = sealed.records()
    seals = [r for r in recs if r["type"] == SEAL_TYPE]
    assert report.ok and report.mode == "sealed" and report.unsealed_records == 0
    assert report.checkpoints == len(seals) >= 12
    assert [r["details"]["epoch"] for r in seals] == list(range(len(seals)))
    assert seals[-1]["details"]["reason"] == "close" and report.sealed_upto == recs[-1]["seq"]
    # at least every 5 records, whatever the batching
    gaps = [b - a for a, b in zip([-1, *seal_seqs(sealed)], seal_seqs(sealed), strict=False)]
    assert max(gaps) <= 6
    # no key: the checkpoints are only consistent with each other, and said to be
    unkeyed = verify_files(log_files(sealed.path))
    assert unkeyed.ok and unkeyed.mode == "unkeyed"
    assert any("prove nothing" in w for w in unkeyed.warnings)


def test_forward_security_the_host_keeps_no_past_key(sealed: Sealed) -> None:
    state = json.loads(sealed.state.read_text())
    current = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(state["private"]))
    seals = [r["details"] for r in sealed.records() if r["type"] == SEAL_TYPE]
    # the only private key left is the one for the epoch after the last checkpoint
    assert public_hex(current.public_key()) == seals[-1]["next_key"]
    assert state["epoch"] == len(seals)
    assert all(public_hex(current.public_key()) != d["key"] for d in seals)
    assert not sealed.state.with_name(sealed.state.name + ".new").exists()
    assert (sealed.state.stat().st_mode & 0o777) == 0o600
    # with it, an attacker rewrites a record and re-signs the checkpoint after it: refused
    target = seal_seqs(sealed)[3]

    def resign(recs: list[Record]) -> list[Record]:
        recs[target - 2]["principal"] = "mallory"
        return recs

    rechain(sealed.path, resign)
    recs = sealed.records()
    cp = recs[target - recs[0]["seq"]]
    cp["details"]["sig"] = current.sign(
        seal_message(cp["seq"], cp["ts"], cp["prev"], cp["details"])).hex()
    rechain(sealed.path, lambda r: [*r[: target], cp, *r[target + 1 :]])
    must_fail(sealed.verify(), "signature does not verify")
    assert sealed.verify().first_bad.seq == target  # type: ignore[union-attr]


# -- edits -------------------------------------------------------------------------------
def test_edit_without_rechain_is_a_hash_mismatch(sealed: Sealed) -> None:
    seq = [r["seq"] for r in sealed.records() if r["type"] != SEAL_TYPE][15]
    f, line = where(sealed, seq)
    text = Path(f).read_text().splitlines(keepends=True)
    text[line - 1] = text[line - 1].replace('"alice"', '"mallory"')
    Path(f).write_text("".join(text))
    report = sealed.verify()
    must_fail(report, "hash mismatch")
    bad = report.first_bad
    assert bad is not None and (bad.file, bad.line, bad.seq) == (f, line, seq)


@pytest.mark.parametrize("victim", [0, 1, 20, 37, "just before a checkpoint", "last"])
def test_edit_with_rechain_breaks_the_next_checkpoint(sealed: Sealed, victim: Any) -> None:
    seals = seal_seqs(sealed)
    plain = [r["seq"] for r in sealed.records() if r["type"] != SEAL_TYPE]
    seq = {"just before a checkpoint": seals[5] - 1, "last": plain[-1]}.get(
        victim, plain[victim] if isinstance(victim, int) else -1)
    assert sealed.records()[seq]["type"] != SEAL_TYPE

    def edit(recs: list[Record]) -> list[Record]:
        recs[seq]["details"] = {"nbytes": 1}
        return recs

    rechain(sealed.path, edit)
    report = sealed.verify()
    must_fail(report, "signature does not verify")
    bad = report.first_bad
    assert bad is not None
    after = min(s for s in seals if s > seq)
    assert bad.seq == after and (bad.file, bad.line) == where(sealed, after)
    before = max([-1, *(s for s in seals if s < seq)])
    assert f"records seq {before + 1}..{after - 1}" in bad.problem


def test_a_rewritten_checkpoint_field_is_caught(sealed: Sealed) -> None:
    target = seal_seqs(sealed)[2]
    other = public_hex(Ed25519PrivateKey.generate().public_key())

    def edit(recs: list[Record]) -> list[Record]:
        recs[target]["details"]["next_key"] = other
        return recs

    rechain(sealed.path, edit)
    must_fail(sealed.verify(), "signature does not verify")


# -- insertions and deletions ----------------------------------------------------------
@pytest.mark.parametrize("at", [0, 7, 31, 58])
def test_insertion_with_renumbering_is_caught(sealed: Sealed, at: int) -> None:
    def insert(recs: list[Record]) -> list[Record]:
        fake = dict(recs[at], principal="mallory", type="memory.free")
        return [*recs[:at], fake, *recs[at:]]

    rechain(sealed.path, insert)
    must_fail(sealed.verify(), "signature does not verify")


def test_insertion_without_renumbering_is_caught(sealed: Sealed) -> None:
    f, line = where(sealed, 12)
    text = Path(f).read_text().splitlines(keepends=True)
    Path(f).write_text("".join([*text[:line], text[line - 1], *text[line:]]))
    must_fail(sealed.verify(), "expected seq 13, found 12")


@pytest.mark.parametrize("at", [0, 3, 30, 57])
def test_deletion_with_renumbering_is_caught(sealed: Sealed, at: int) -> None:
    rechain(sealed.path, lambda recs: [*recs[:at], *recs[at + 1 :]])
    must_fail(sealed.verify())


def test_deleting_a_checkpoint_and_rechaining_is_caught(sealed: Sealed) -> None:
    target = seal_seqs(sealed)[4]
    rechain(sealed.path, lambda recs: [*recs[:target], *recs[target + 1 :]])
    report = sealed.verify()
    must_fail(report)
    assert report.first_bad.seq <= target + 6  # type: ignore[union-attr]


def test_deletion_without_rechain_is_caught(sealed: Sealed) -> None:
    f, line = where(sealed, 33)
    text = Path(f).read_text().splitlines(keepends=True)
    del text[line - 1]
    Path(f).write_text("".join(text))
    must_fail(sealed.verify(), "expected seq 33, found 34")


# -- head, tail, whole files -------------------------------------------------------------
def test_missing_head_records_fail(sealed: Sealed) -> None:
    first = log_files(sealed.path)[0]
    text = first.read_text().splitlines(keepends=True)
    first.write_text("".join(text[3:]))
    report = sealed.verify()
    must_fail(report, "head missing: the log starts at seq 3, not 0")
    assert (report.first_bad.file, report.first_bad.line) == (str(first), 1)  # type: ignore[union-attr]

    # renumbered from 0 and rechained from the genesis: the first checkpoint says no
    def restart(recs: list[Record]) -> list[Record]:
        recs[0].update(seq=0, prev="0" * 64)
        return recs

    rechain(sealed.path, restart)
    assert sealed.records()[0]["seq"] == 0
    must_fail(sealed.verify(), "signature does not verify")


def test_missing_oldest_file_fails_unless_handed_a_checkpoint(sealed: Sealed,
                                                              tmp_path: Path) -> None:
    files = log_files(sealed.path)
    oldest_last = json.loads(files[0].read_text().splitlines()[-1])["seq"]
    files[0].unlink()
    must_fail(sealed.verify(), "head missing", "--from")
    # a checkpoint exported while the records were there: verify from it
    later = next(e for e in sealed.exports if e["seq"] > oldest_last + 1)
    report = sealed.verify(anchor=sealed.anchor(later, tmp_path), require_sealed=True)
    assert report.ok, report.first_bad
    assert report.mode == "sealed" and report.unsealed_records == 0
    # a checkpoint inside the deleted file: the gap after it is named
    gone = next(e for e in sealed.exports if e["seq"] < oldest_last)
    must_fail(sealed.verify(anchor=sealed.anchor(gone, tmp_path)),
              f"head missing: the log starts at seq {oldest_last + 1}, after the handed "
              f"checkpoint (seq {gone['seq']}")


def test_missing_rotated_file_in_the_middle_fails(sealed: Sealed) -> None:
    log_files(sealed.path)[2].unlink()
    must_fail(sealed.verify(), "deleted before it")


def test_missing_tail_records_before_the_last_checkpoint_fail(sealed: Sealed) -> None:
    last = sealed.path
    text = last.read_text().splitlines(keepends=True)
    assert json.loads(text[-1])["type"] == SEAL_TYPE
    Path(last).write_text("".join([*text[:-3], text[-1]]))
    must_fail(sealed.verify(), "expected seq")


def test_cut_tail_with_its_checkpoints_fails_against_an_exported_checkpoint(
        sealed: Sealed, tmp_path: Path) -> None:
    final = sealed.anchor(sealed.exports[-1], tmp_path)
    assert final.reason == "close"
    text = sealed.path.read_text().splitlines(keepends=True)
    sealed.path.write_text("".join(text[:-8]))
    # the log alone cannot tell a cut tail from one never written: it reports less sealed
    alone = sealed.verify()
    assert alone.ok and alone.sealed_upto is not None and alone.sealed_upto < final.seq
    report = sealed.verify(anchor=final)
    must_fail(report, "tail missing", f"before the handed checkpoint (seq {final.seq}")
    # and when the whole active file goes
    sealed.path.unlink()
    must_fail(sealed.verify(anchor=final), "tail missing")


def test_wiped_log_restarted_is_refused_by_the_writer_and_the_verifier(
        sealed: Sealed, tmp_path: Path) -> None:
    saved = tmp_path / "saved-state"
    shutil.copy(sealed.state, saved)
    for f in log_files(sealed.path):
        f.unlink()
    # the writer holds the state of the last checkpoint: it will not start a new chain
    with pytest.raises(AuditError, match=r"last wrote checkpoint epoch \d+ at seq \d+, but "
                       r"the log is empty: it was truncated, wiped or replaced"):
        AuditLog(sealed.path, seal_key=sealed.state)
    # the attacker starts an unsealed log ...
    with AuditLog(sealed.path) as log:
        log.log(EventType.SYSTEM_START)
    must_fail(sealed.verify(), "no checkpoint: the log is unsealed")
    # ... or one sealed with the stolen current key passed off as epoch 0
    for f in log_files(sealed.path):
        f.unlink()
    stolen = json.loads(saved.read_text())
    stolen.update(epoch=0, last_seal=None)
    saved.write_text(json.dumps(stolen))
    with AuditLog(sealed.path, seal_key=saved) as log:
        log.log(EventType.SYSTEM_START)
    must_fail(sealed.verify(), "checkpoint epoch 0 is signed by key",
              "not the verification key")


def test_a_key_from_another_log_fails(sealed: Sealed, tmp_path: Path) -> None:
    other = make_sealed(tmp_path / "other", n=20)
    report = verify_files(log_files(sealed.path), key=other.key)
    must_fail(report, "sealed with another key")
    assert report.first_bad.seq == seal_seqs(sealed)[0]  # type: ignore[union-attr]
    # and a checkpoint of the other log handed as a starting point
    must_fail(sealed.verify(anchor=other.anchor(other.exports[1], tmp_path)),
              "belongs to another log")


def test_a_forged_checkpoint_fails(sealed: Sealed) -> None:
    target = seal_seqs(sealed)[6]
    mine = Ed25519PrivateKey.generate()

    def forge(recs: list[Record]) -> list[Record]:
        d = recs[target]["details"]
        d["key"] = public_hex(mine.public_key())
        return recs

    rechain(sealed.path, forge)
    recs = sealed.records()
    cp = recs[target]
    cp["details"]["sig"] = mine.sign(
        seal_message(cp["seq"], cp["ts"], cp["prev"], cp["details"])).hex()
    rechain(sealed.path, lambda _: recs)
    report = sealed.verify()
    must_fail(report, "a forged checkpoint")
    assert report.first_bad.seq == target  # type: ignore[union-attr]


# -- unsealed records, old logs, reopening, crashes -------------------------------------
def test_records_after_the_last_checkpoint_are_unsealed(tmp_path: Path) -> None:
    s = make_sealed(tmp_path / "log", n=12)
    with AuditLog(s.path, seal_key=s.state, seal_records=1000, seal_seconds=3600) as log:
        for _ in range(4):
            log.log(EventType.DEVICE_LIST, principal="bob")
        log.flush()
        report = s.verify()
        assert report.ok and report.unsealed_records == 4
        assert report.sealed_upto == report.last_seq - 4  # type: ignore[operator]
        must_fail(s.verify(require_sealed=True), "4 record(s) after the last checkpoint")
        # rewriting unsealed records cannot be caught yet, and is not called verified
        rechain(s.path, lambda recs: [*recs[:-1], dict(recs[-1], principal="mallory")])
        assert s.verify().unsealed_records == 4
        out = run("audit", "verify", str(s.path), "--key", str(s.pub))
        assert out.returncode == 0
        assert "UNSEALED: 4 record(s) after the last checkpoint" in out.stdout
    # the writer kept the chain head in memory: its next checkpoint exposes the rewrite
    final = s.verify()
    must_fail(final, "chain broken")
    assert final.first_bad is not None
    assert json.loads(s.path.read_text().splitlines()[-1])["seq"] == final.first_bad.seq


def test_interval_checkpoints_while_idle(tmp_path: Path) -> None:
    s = make_sealed(tmp_path / "log", n=0)
    with AuditLog(s.path, seal_key=s.state, seal_records=1000, seal_seconds=0.2,
                  flush_interval=0.05) as log:
        log.log(EventType.DEVICE_LIST)
        import time

        deadline = time.monotonic() + 10
        while log.checkpoints == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.checkpoints == 1
        exported = log.export_checkpoint()
        assert exported is not None and json.loads(exported["line"])["details"][
            "reason"] == "interval"
    assert s.verify(require_sealed=True).ok


def test_old_unsealed_log_verifies_in_labelled_unsealed_mode(tmp_path: Path) -> None:
    path = tmp_path / "old.log"
    with AuditLog(path) as log:
        for _ in range(5):
            log.log(EventType.DEVICE_LIST)
    report = verify_files([path])
    assert report.ok and report.mode == "unsealed" and report.unsealed_records == 5
    out = run("audit", "verify", str(path))
    assert out.returncode == 0 and out.stdout.startswith("OK (unsealed, hash chain only)")
    create_seal_key(tmp_path / "st", tmp_path / "pub.pem")
    demanded = run("audit", "verify", str(path), "--key", str(tmp_path / "pub.pem"))
    assert demanded.returncode == 1
    assert "no checkpoint: the log is unsealed" in demanded.stdout


def test_sealing_an_old_log_covers_its_records(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path) as log:
        for _ in range(7):
            log.log(EventType.DEVICE_LIST)
    create_seal_key(tmp_path / "st", tmp_path / "pub.pem")
    with AuditLog(path, seal_key=tmp_path / "st") as log:
        log.log(EventType.SYSTEM_START)
    report = verify_files([path], key=load_public_key(tmp_path / "pub.pem"),
                          require_sealed=True)
    assert report.ok and report.checkpoints == 1 and report.records == 9


def test_reopening_continues_epochs_and_restores_a_lost_checkpoint(sealed: Sealed) -> None:
    # a crash after the key advanced, before the checkpoint line reached the file
    text = sealed.path.read_text().splitlines(keepends=True)
    lost = json.loads(text[-1])
    assert lost["type"] == SEAL_TYPE
    sealed.path.write_text("".join(text[:-1]))
    with AuditLog(sealed.path, seal_key=sealed.state, seal_records=5) as log:
        log.log(EventType.SYSTEM_START)
    recs = sealed.records()
    assert recs[lost["seq"]] == lost
    assert recs[lost["seq"] + 1]["type"] == "system.audit_recovered"
    assert recs[lost["seq"] + 1]["details"]["checkpoint_restored_seq"] == lost["seq"]
    report = sealed.verify(require_sealed=True)
    assert report.ok and report.last_checkpoint["epoch"] == lost["details"]["epoch"] + 1  # type: ignore[index]


def test_reopening_a_replaced_log_is_refused(sealed: Sealed) -> None:
    rechain(sealed.path, lambda recs: [dict(r, principal="mallory") for r in recs],
            renumber=False)
    with pytest.raises(AuditError, match="holds a different record at seq"):
        AuditLog(sealed.path, seal_key=sealed.state)


def test_rotation_and_retention_with_exported_checkpoints(tmp_path: Path) -> None:
    root = tmp_path / "log"
    root.mkdir()
    create_seal_key(root / "st", root / "pub.pem")
    export = root / "latest-checkpoint.json"
    with AuditLog(root / "audit.log", seal_key=root / "st", max_bytes=2048, retention=3,
                  seal_records=10, checkpoint_export=export) as log:
        for i in range(150):
            log.log(EventType.MEMORY_COPY_H2D, principal="alice", details={"i": i})
            if i == 140:
                log.flush()
                shipped = json.loads(export.read_text())  # what an operator ships off
    files = log_files(root / "audit.log")
    assert [f.name for f in files] == ["audit.log.3", "audit.log.2", "audit.log.1", "audit.log"]
    assert all(f.stat().st_size <= 2048 for f in files)
    key = load_public_key(root / "pub.pem")
    must_fail(verify_files(files, key=key), "head missing")
    (tmp_path / "shipped.json").write_text(json.dumps(shipped))
    report = verify_files(files, key=key, anchor=load_anchor(tmp_path / "shipped.json"),
                          require_sealed=True)
    assert report.ok, report.first_bad
    assert report.sealed_upto == report.last_seq and report.checkpoints >= 1
    out = run("audit", "verify", str(root / "audit.log"), "--key", str(root / "pub.pem"),
              "--from", str(tmp_path / "shipped.json"))
    assert out.returncode == 0 and out.stdout.startswith("OK (sealed)"), out.stdout


def test_checkpoint_and_keygen_commands(tmp_path: Path) -> None:
    out = run("audit", "keygen", "--state", str(tmp_path / "st"), "--pub", str(tmp_path / "p"))
    assert out.returncode == 0, out.stderr
    again = run("audit", "keygen", "--state", str(tmp_path / "st"), "--pub", str(tmp_path / "q"))
    assert again.returncode == 2 and "never overwritten" in again.stderr
    with AuditLog(tmp_path / "a.log", seal_key=tmp_path / "st") as log:
        log.log(EventType.SYSTEM_START)
    got = run("audit", "checkpoint", str(tmp_path / "a.log"), "--out", str(tmp_path / "c.json"))
    assert got.returncode == 0, got.stderr
    anchor = load_anchor(tmp_path / "c.json")
    assert anchor.seq == 1 and anchor.reason == "close"
    # a doctored export is refused before any log is read
    doc = json.loads((tmp_path / "c.json").read_text())
    doc["line"] = doc["line"].replace('"close"', '"rotate"')
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    bad = run("audit", "verify", str(tmp_path / "a.log"), "--from", str(tmp_path / "bad.json"))
    assert bad.returncode == 2 and "hash does not match" in bad.stderr
    none = run("audit", "checkpoint", str(tmp_path / "nothing.log"))
    assert none.returncode == 2


def test_log_refuses_to_write_a_checkpoint_for_a_caller(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a.log") as log, pytest.raises(ValueError, match="checkpoints"):
        log.log(EventType.AUDIT_SEAL)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exogpu", *args], capture_output=True,
                          text=True, timeout=60, check=False)
