"""The placement problem as a mixed-integer program, solved by HiGHS.

A reference formulation for cross-checks and benchmarks (the native search is
the product): a[li, d] = 1 when layer li runs on device d; each device's layers
form one contiguous block (at most one block start per device), so blocks are
stages in layer order on distinct devices; w[li, d, e] = 1 when layer li ends a
stage on d and layer li + 1 starts one on e. Objectives: "throughput"
(minimise the bottleneck) and "latency" (minimise the sum); no ring,
no fixed order. Needs `highspy`.
"""

from __future__ import annotations

from typing import Any

from exogpu import InvalidArgument
from exogpu.placement.problem import Problem


def solve_milp(problem: Problem, objective: str = "throughput", time_limit: float = 600.0) -> float:
    """The optimal value, or +inf when infeasible."""
    import highspy

    if problem.ring or problem.fixed_order:
        raise InvalidArgument("the MILP reference covers neither ring nor fixed_order")
    if objective not in ("throughput", "latency"):
        raise InvalidArgument(f"the MILP reference solves throughput or latency, not {objective!r}")
    p = problem
    n_layers, devices = len(p.layers), p.devices
    n_dev = len(devices)
    batch = p.batch
    highs_type: Any = highspy.Highs
    h = highs_type()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("mip_abs_gap", 0.0)
    inf = highspy.kHighsInf

    def t(layer: int, d: int) -> float:
        x, dev = p.layers[layer], devices[d]
        m = p.read_bytes(layer)  # streamed per step (version 2)
        return max(batch * x.flops_per_token / dev.flops, m / dev.memory_bandwidth)

    def hop(layer: int, a: int, b: int) -> float:
        link = p.link(devices[a].id, devices[b].id)
        return link.latency + batch * p.layers[layer].activation_bytes / link.bandwidth

    count = 0

    def var(lo: float, hi: float, cost: float, integer: bool) -> int:
        nonlocal count
        h.addVar(lo, hi)
        h.changeColCost(count, cost)
        if integer:
            h.changeColIntegrality(count, highspy.HighsVarType.kInteger)
        count += 1
        return count - 1

    def row(lo: float, hi: float, terms: list[tuple[int, float]]) -> None:
        h.addRow(lo, hi, len(terms), [i for i, _ in terms], [c for _, c in terms])

    latency = objective == "latency"
    a = {
        (li, d): var(0, 1, t(li, d) if latency else 0.0, True)
        for li in range(n_layers)
        for d in range(n_dev)
    }
    u = {(li, d): var(0, 1, 0.0, True) for li in range(n_layers) for d in range(n_dev)}
    bottleneck = None if latency else var(0, inf, 1.0, False)
    for li in range(n_layers):
        row(1, 1, [(a[li, d], 1.0) for d in range(n_dev)])
    for d in range(n_dev):
        cap = (1 - p.memory_headroom) * devices[d].memory_bytes
        row(-inf, cap, [(a[li, d], float(p.resident_bytes(li))) for li in range(n_layers)])
        row(-inf, 1, [(u[li, d], 1.0) for li in range(n_layers)])
        for li in range(n_layers):  # u >= a[li] - a[li-1]: a block starts at li
            terms = [(u[li, d], 1.0), (a[li, d], -1.0)] + ([(a[li - 1, d], 1.0)] if li else [])
            row(0, inf, terms)
        if bottleneck is not None:
            row(0, inf, [(bottleneck, 1.0)] + [(a[li, d], -t(li, d)) for li in range(n_layers)])
    for li in range(n_layers - 1):
        for d in range(n_dev):
            for e in range(n_dev):
                if d == e:
                    continue
                cost = hop(li, d, e)
                w = var(0, 1, cost if latency else 0.0, True)
                row(-1, inf, [(w, 1.0), (a[li, d], -1.0), (a[li + 1, e], -1.0)])
                if bottleneck is not None:
                    row(0, inf, [(bottleneck, 1.0), (w, -cost)])
    h.run()
    status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kInfeasible:
        return float("inf")
    if status != highspy.HighsModelStatus.kOptimal:
        raise RuntimeError(f"HiGHS stopped with {h.modelStatusToString(status)}")
    info: Any = h.getInfo()
    return float(info.objective_function_value)
