"""kill -9 a writer in fsync mode: every event whose log() returned is in the file and
the chain verifies; reopening cuts any torn tail and continues the chain."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from exogpu.security.audit import AuditLog, EventType, log_files
from exogpu.security.audit_verify import verify_files

WRITER = textwrap.dedent("""
    import os, sys, threading
    from exogpu.security.audit import AuditLog, EventType
    log = AuditLog(sys.argv[1], durability="fsync", max_bytes=16384, retention=1000)
    def work(k):
        for i in range(100000):  # bounded; the parent kills us long before
            seq = log.log(EventType.MEMORY_COPY_D2H, principal=f"w{k}",
                          details={"i": i, "pad": "x" * (i % 50)})
            os.write(1, b"%d\\n" % seq)  # acknowledged: log() has returned
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
""")


def test_kill_9_loses_no_acknowledged_event(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    acked: list[int] = []
    try:
        while len(acked) < 400:
            line = proc.stdout.readline()
            assert line, "writer exited early"
            acked.append(int(line))
        os.kill(proc.pid, signal.SIGKILL)
        rest = proc.stdout.read()  # acknowledgements already in the pipe
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    acked += [int(x) for x in rest.split()]

    files = log_files(path)
    assert len(files) > 1  # it rotated while running
    report = verify_files(files, allow_torn_tail=True)
    assert report.ok, report.first_bad
    on_disk = {json.loads(line)["seq"] for f in files for line in f.read_bytes().split(b"\n")[:-1]}
    missing = set(acked) - on_disk
    assert not missing, f"acknowledged but lost: {sorted(missing)[:10]}"
    assert report.first_seq == 0 and report.last_seq is not None
    assert report.last_seq >= max(acked)

    # reopening cuts a torn tail (auditing the cut) and continues the chain
    torn = not path.read_bytes().endswith(b"\n") if path.stat().st_size else False
    with AuditLog(path) as log:
        assert log.next_seq >= report.last_seq + 1
        log.log(EventType.SYSTEM_START)
    strict = verify_files(log_files(path))
    assert strict.ok, strict.first_bad
    if torn:
        assert any(json.loads(line)["type"] == "system.audit_recovered"
                   for line in path.read_text().splitlines())


def test_reopen_after_torn_write_is_audited(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    with AuditLog(path) as log:
        for _ in range(3):
            log.log(EventType.DEVICE_LIST)
    with open(path, "ab") as f:
        f.write(b'{"seq":3,"ts":"2026-01-01T00:00:00.000000Z","type":"dev')  # a torn write
    assert not verify_files([path]).ok
    with AuditLog(path) as log:
        assert log.next_seq == 4  # seq 3 is the recovery record
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    assert recs[3]["type"] == "system.audit_recovered"
    assert recs[3]["details"]["torn_bytes_removed"] == 55
    assert verify_files([path]).ok
