"""asv: solve time of the placement search (see benchmarks/placement_report.py
for the figures with their references)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exogpu.placement import solve
from placement_instances import llama70b_lab, synthetic


class Llama70bLab:
    params: ClassVar[list[str]] = ["throughput", "latency", "memory"]
    param_names: ClassVar[list[str]] = ["objective"]

    def setup(self, objective: str) -> None:
        self.problem = llama70b_lab()
        solve(self.problem, objective)  # warm-up

    def time_solve(self, objective: str) -> None:
        solve(self.problem, objective)

    def track_proven_optimal(self, objective: str) -> int:
        return int(solve(self.problem, objective).optimal)


class Scaling:
    params: ClassVar[list[list[int]]] = [[32, 82, 200], [2, 8, 12]]
    param_names: ClassVar[list[str]] = ["layers", "devices"]

    def setup(self, layers: int, devices: int) -> None:
        self.problem = synthetic(layers - 2, devices)

    def time_solve_throughput(self, layers: int, devices: int) -> None:
        solve(self.problem, "throughput", time_budget=1.0)
