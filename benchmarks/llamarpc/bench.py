"""One llama-bench run on the lab: a decode-only test (`-p 0 -n N`) with the
model split over the servers in a given order, timed with the links shaped.

The model loads over unshaped links; the shaping goes on when llama-bench
starts its warm-up token and off again when it exits. The first timed
repetition, which may overlap the switch, is dropped. The run also records
which device llama.cpp gave every unit (its -v log), the bytes each link
carried while shaped, and each server's peak memory.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from llamarpc.lab import Lab

_ASSIGNED = re.compile(r"layer\s+(\d+) assigned to device (\S+?),")


@dataclass(frozen=True)
class Split:
    label: str
    order: tuple[int, ...]  # servers, in the order llama.cpp gets them (--rpc)
    tensor_split: tuple[float, ...] | None  # -ts; None: llama.cpp's default
    calibrates: int | None = None  # a calibration run: the whole model on this server
    # llama-bench's placement flags as given (exogpu's emitted ones), in place
    # of those built from `order` and `tensor_split`, which must agree with them
    flags: tuple[str, ...] | None = None

    def ts_arg(self) -> str | None:
        if self.tensor_split is None:
            return None
        return "/".join(f"{x:g}" for x in self.tensor_split)


@dataclass
class Run:
    split: Split
    samples_ms_per_token: list[float]  # one per timed repetition, the first dropped
    units: dict[int, int]  # server -> units llama.cpp gave it (from its log)
    link_bytes: list[int]  # per server link, while shaped, per generated token
    peak_memory: list[int] = field(default_factory=list)  # per server, bytes


def units_of(split: Split, n_units: int, servers: int) -> dict[int, int]:
    """What llama.cpp's rule gives each server: unit i of n goes to the first
    device whose cumulative share exceeds i / n (float32 arithmetic, as there)."""
    import numpy as np

    shares = (np.ones(len(split.order), dtype=np.float32) if split.tensor_split is None
              else np.asarray(split.tensor_split, dtype=np.float32))
    cum = np.cumsum(shares, dtype=np.float32) / np.float32(shares.sum(dtype=np.float32))
    out = dict.fromkeys(range(servers), 0)
    for i in range(n_units):
        device = int(np.searchsorted(cum, np.float32(i) / np.float32(n_units), side="right"))
        out[split.order[device]] += 1
    return out


def placement_flags(lab: Lab, split: Split) -> list[str]:
    if split.flags is not None:
        return list(split.flags)
    flags = ["-rpc", ",".join(lab.rpc_endpoint(i) for i in split.order), "-ngl", "99"]
    ts = split.ts_arg()
    return flags + (["-ts", ts] if ts is not None else [])


def run(lab: Lab, model: Path, split: Split, n_gen: int, reps: int, log: Path,
        timeout: float = 600.0) -> Run:
    lab.alive()
    argv = [str(lab.tools.bench), "-m", str(model), *placement_flags(lab, split),
            "-p", "0", "-n", str(n_gen), "-t", "1", "-r", str(reps + 1),
            "--repack", "0", "--progress", "-v", "-o", "jsonl"]
    if split.calibrates is not None:
        lab.set_memory_limit(split.calibrates, None)
    lab.shape(False)
    lab.reset_peak_memory()
    before: list[int] = []
    assigned: dict[int, str] = {}
    try:
        with log.open("w") as err:
            proc = subprocess.Popen(lab.client(argv), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, errors="replace")
            timer = threading.Timer(timeout, proc.kill)
            timer.start()
            try:
                assert proc.stderr is not None and proc.stdout is not None
                for line in proc.stderr:
                    err.write(line)
                    m = _ASSIGNED.search(line)
                    if m:
                        assigned[int(m.group(1))] = m.group(2)
                    if "warmup generation run" in line and not before:
                        lab.shape(True)
                        before = lab.link_bytes()
                out = proc.stdout.read()
                rc = proc.wait()
            finally:
                timer.cancel()
                if proc.poll() is None:  # interrupted: stop it before the lab goes
                    proc.kill()
                    proc.wait()
            after = lab.link_bytes() if before else []
    finally:
        lab.shape(False)
        if split.calibrates is not None:
            lab.set_memory_limit(split.calibrates, lab.specs[split.calibrates].memory_bytes)
    if rc != 0:
        raise RuntimeError(f"llama-bench exited with {rc} for {split.label}: see {log}")
    rows = [json.loads(x) for x in out.splitlines() if x.strip()]
    samples = [ns / 1e6 / n_gen for ns in rows[-1]["samples_ns"]][1:]
    units = dict.fromkeys(range(len(lab.specs)), 0)
    for device in assigned.values():  # RPC<k>: the k-th server of --rpc
        units[split.order[int(device.removeprefix("RPC"))]] += 1
    tokens = (reps + 1) * n_gen + 1  # the warm-up token ran shaped too
    per_token = [round((b - a) / tokens) for a, b in zip(before, after, strict=True)]
    return Run(split, samples, units, per_token,
               [lab.peak_memory(i) for i in range(len(lab.specs))])
