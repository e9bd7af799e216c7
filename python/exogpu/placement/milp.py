"""The placement problem as a mixed-integer program, solved by HiGHS.

A reference formulation for cross-checks and benchmarks (the native search is
the product): a[li, d] = 1 when layer li runs on device d; each device's layers
form one contiguous block (at most one block start per device), so blocks are
stages in layer order on distinct devices; w[li, d, e] = 1 when layer li ends a
stage on d and layer li + 1 starts one on e. Objectives: "throughput"
(minimise the bottleneck) and "latency" (minimise the sum); no ring,
no fixed order. Version 2 terms: a device's stage overhead counts once when
it holds a block; endpoints charge the devices of the first and last layer;
a device that may offload has a binary z (offloads) with its excess
x >= M - usable read from disk, and its resident bytes R >= M - big * z,
R >= usable * z, so that a pool's members keep sum R <= usable(pool).
Needs `highspy`.
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
    costs: dict[int, float] = {}

    def add_cost(col: int, cost: float) -> None:
        costs[col] = costs.get(col, 0.0) + cost
        h.changeColCost(col, costs[col])

    def var(lo: float, hi: float, cost: float, integer: bool) -> int:
        nonlocal count
        h.addVar(lo, hi)
        costs[count] = cost
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
    big = float(p.total_resident_bytes() + 1)
    kv = [p.batch * p.context_tokens * x.kv_bytes_per_token for x in p.layers]
    resident: dict[str, list[tuple[int, float]]] = {}  # pool -> terms of its members' R
    for d in range(n_dev):
        dev = devices[d]
        usable = float(p.usable_bytes(dev.memory_bytes))
        memory = [(a[li, d], float(p.resident_bytes(li))) for li in range(n_layers)]
        offloads = p.allow_disk_offload and dev.disk_read_bandwidth is not None
        stage_terms = [(a[li, d], -t(li, d)) for li in range(n_layers)]
        held = memory
        if offloads:
            assert dev.disk_read_bandwidth is not None
            z = var(0, 1, 0.0, True)
            excess = var(0, inf, 1.0 / dev.disk_read_bandwidth if latency else 0.0, False)
            r = var(0, inf, 0.0, False)
            row(-inf, usable, [*memory, (z, -big)])  # M <= usable unless it offloads
            row(-inf, usable, [(a[li, d], float(kv[li])) for li in range(n_layers)])  # KV stays
            row(-usable, inf, [(excess, 1.0)] + [(v, -c) for v, c in memory])  # x >= M - usable
            row(0, inf, [(r, 1.0), (z, big)] + [(v, -c) for v, c in memory])  # R >= M - big z
            row(0, inf, [(r, 1.0), (z, -usable)])  # R >= usable z
            stage_terms.append((excess, -1.0 / dev.disk_read_bandwidth))
            held = [(r, 1.0)]
        else:
            row(-inf, usable, memory)
        if dev.memory_pool is not None:
            resident.setdefault(dev.memory_pool, []).extend(held)
        row(-inf, 1, [(u[li, d], 1.0) for li in range(n_layers)])
        for li in range(n_layers):  # u >= a[li] - a[li-1]: a block starts at li
            terms = [(u[li, d], 1.0), (a[li, d], -1.0)] + ([(a[li - 1, d], 1.0)] if li else [])
            row(0, inf, terms)
        if dev.stage_overhead:
            # used = sum of u (one block start at most) >= every a: the
            # overhead counts once when the device holds a block.
            for li in range(n_layers):
                row(0, inf, [(u[lj, d], 1.0) for lj in range(n_layers)] + [(a[li, d], -1.0)])
            for lj in range(n_layers):
                if latency:
                    add_cost(u[lj, d], dev.stage_overhead)
                stage_terms.append((u[lj, d], -dev.stage_overhead))
        if bottleneck is not None:
            row(0, inf, [(bottleneck, 1.0), *stage_terms])
        if p.endpoints is not None:
            # the first layer's device takes the entry hop, the last layer's the exit hop
            ends = p.endpoints
            link = p.endpoint_link(dev.id)
            entry = link.latency + batch * ends.input_bytes / link.bandwidth
            exit_ = link.latency + batch * ends.output_bytes / link.bandwidth
            if latency:
                add_cost(a[0, d], entry)
                add_cost(a[n_layers - 1, d], exit_)
            else:
                assert bottleneck is not None
                row(0, inf, [(bottleneck, 1.0), (a[0, d], -entry)])
                row(0, inf, [(bottleneck, 1.0), (a[n_layers - 1, d], -exit_)])
    capacities = p.pool_capacities()
    for pool, terms in resident.items():
        row(-inf, float(p.usable_bytes(capacities[pool])), terms)
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
