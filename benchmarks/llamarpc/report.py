"""Predicted against measured: the rows, the ranking check, the table and
the plot of one model shape, from the measurements the benchmark saved
(so that a changed model re-prices the same measurements)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exogpu.placement import solve
from llamarpc import predict
from llamarpc.gguf_model import Shape
from llamarpc.lab import ServerSpec


@dataclass
class Row:
    label: str
    flags: str
    units: dict[str, int]  # server -> units, in --rpc order
    measured_ms: list[float]
    predicted_ms: float
    predicted_uncal_ms: float
    link_bytes_per_token: dict[str, int]
    # of the uncalibrated error, the part the stages' compute times make
    # (uncalibrated minus calibrated), the rest being hops and measurement
    compute_share_of_uncal_error: float = 0.0
    # calibrated error of each round, against that round's own calibration:
    # the runs closest in time, so the machine's drift over the rounds cancels
    round_errors: list[float] | None = None

    @property
    def paired_error(self) -> float:
        return statistics.median(self.round_errors) if self.round_errors else self.error

    @property
    def median(self) -> float:
        return statistics.median(self.measured_ms)

    @property
    def error(self) -> float:
        return self.predicted_ms / self.median - 1

    @property
    def error_uncal(self) -> float:
        return self.predicted_uncal_ms / self.median - 1


def analyse(raw: dict[str, Any], shape_raw: dict[str, Any]) -> dict[str, Any]:
    """Rows of every split (calibration runs apart) priced by today's exogpu."""
    cluster = [ServerSpec(**s) for s in raw["cluster"]]
    shape = Shape(**shape_raw["shape"])
    uncal = predict.base_problem(shape, cluster, raw["devices_profiled"], raw["links_probed"])
    splits = shape_raw["splits"]
    whole = {s["calibrates"]: statistics.median(s["samples_ms"]) for s in splits
             if s["calibrates"] is not None}
    cal = predict.calibrated(uncal, cluster, whole)
    rows = []
    for s in splits:
        if s["calibrates"] is not None:
            continue
        units = {int(k): v for k, v in s["units"].items()}
        stages = predict.stages_of(cluster, units, s["order"])
        with_cal, with_uncal = predict.predict(cal, stages), predict.predict(uncal, stages)
        row = Row(s["label"], " ".join(s["flags"]),
                  {cluster[i].name: units[i] for i in s["order"]}, s["samples_ms"],
                  with_cal.latency * 1e3, with_uncal.latency * 1e3,
                  {c.name: b for c, b in zip(cluster, s["link_bytes_per_token"], strict=True)})
        compute_gap = sum(x.time for x in with_uncal.stages) - sum(x.time for x in with_cal.stages)
        row.compute_share_of_uncal_error = compute_gap * 1e3 / (row.predicted_uncal_ms - row.median)
        reps = raw.get("reps", 3)
        rounds = len(s["samples_ms"]) // reps
        row.round_errors = []
        for r in range(rounds):
            window = slice(r * reps, (r + 1) * reps)
            that_round = predict.calibrated(uncal, cluster, {
                c["calibrates"]: statistics.median(c["samples_ms"][window]) for c in splits
                if c["calibrates"] is not None})
            row.round_errors.append(predict.predict(that_round, stages).latency * 1e3
                                    / statistics.median(s["samples_ms"][window]) - 1)
        rows.append(row)
    # The plan measured came from the first calibration; does exogpu still make it?
    first = {int(k): v for k, v in shape_raw["first_calibration_ms"].items()}
    replan = solve(predict.calibrated(uncal, cluster, first), objective="latency")
    measured_plan = [(x["device"], x["first_layer"], x["last_layer"])
                     for x in shape_raw["plan"]["stages"]]
    return {"name": shape.name, "rows": rows, "uncalibrated": uncal, "calibrated": cal,
            "calibration_ms": {cluster[i].name: ms for i, ms in whole.items()},
            "calibration_factor": {c.name: b.memory_bandwidth / a.memory_bandwidth
                                   for c, a, b in zip(cluster, uncal.devices, cal.devices,
                                                      strict=True)},
            "replanned": [(x.device, x.first_layer, x.last_layer) for x in replan.stages],
            "measured_plan": measured_plan}


def ranking(rows: list[Row], margin: float = 0.10) -> list[tuple[str, str, bool]]:
    """Every pair of splits whose measured times differ by more than
    `margin`: (faster, slower, whether the calibrated model orders them so)."""
    out = []
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            fast, slow = (a, b) if a.median < b.median else (b, a)
            if slow.median > fast.median * (1 + margin):
                out.append((fast.label, slow.label, fast.predicted_ms < slow.predicted_ms))
    return out


def print_table(result: dict[str, Any]) -> None:
    rows: list[Row] = result["rows"]
    print(f"\n{result['name']}: ms per generated token; measured: median of "
          f"{len(rows[0].measured_ms)} timed runs of 32 tokens (spread: max-min over median); "
          "calib: predicted from the median calibration; paired: median over the rounds of "
          "each round's error against that round's calibration")
    print("calibration (whole model on one server): " + ", ".join(
        f"{k} {v:.1f} ms" for k, v in result["calibration_ms"].items()))
    head = (f"{'split':<27}{'units (--rpc order)':<25}{'measured':>9}{'spread':>7}"
            f"{'calib':>8}{'err':>8}{'paired':>8}{'uncal':>8}{'err':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        units = " ".join(f"{k}:{v}" for k, v in r.units.items())
        spread = (max(r.measured_ms) - min(r.measured_ms)) / r.median
        print(f"{r.label:<27}{units:<25}{r.median:9.1f}{100 * spread:6.0f}%"
              f"{r.predicted_ms:8.1f}{100 * r.error:+7.1f}%{100 * r.paired_error:+7.1f}%"
              f"{r.predicted_uncal_ms:8.1f}{100 * r.error_uncal:+7.1f}%")
    by = {r.label: r for r in rows}
    plan, default = by["exogpu plan"], by["default"]
    print(f"exogpu's plan: {plan.flags}")
    if result["replanned"] != result["measured_plan"]:
        print(f"  (exogpu now plans {result['replanned']} from the same first calibration)")
    print(f"plan against llama.cpp's default split: measured {default.median / plan.median:.3f}x "
          f"as fast ({plan.median:.1f} against {default.median:.1f} ms/token), predicted "
          f"{default.predicted_ms / plan.predicted_ms:.3f}x")
    pairs = ranking(rows)
    wrong = [(a, b) for a, b, right in pairs if not right]
    print(f"pairs of splits more than 10 % apart: {len(pairs)}, ranked right: "
          f"{len(pairs) - len(wrong)}" + "".join(f"\n  ranked wrong: {a} < {b}" for a, b in wrong))
    worst = max(rows, key=lambda r: abs(r.error))
    paired = max(rows, key=lambda r: abs(r.paired_error))
    print(f"largest calibrated error: {100 * worst.error:+.1f} % ({worst.label}); paired by "
          f"round (median of each round's error): {100 * paired.paired_error:+.1f} % "
          f"({paired.label})")
    share = statistics.median(r.compute_share_of_uncal_error for r in rows)
    print(f"uncalibrated errors {min(100 * r.error_uncal for r in rows):+.0f} % to "
          f"{max(100 * r.error_uncal for r in rows):+.0f} %: the stages' compute time makes "
          f"{100 * share:.0f} % of it (median over the splits); llama.cpp's Q8_0 decode "
          "reaches " + ", ".join(f"{k} {1 / v:.1f}x" for k, v in
                                 result["calibration_factor"].items())
          + " less than the profile's roofline of each core")


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows: list[Row] = result["rows"]
    fig, ax = plt.subplots(figsize=(9, 4.8))
    x = list(range(len(rows)))
    ax.boxplot([r.measured_ms for r in rows], positions=x, widths=0.5,
               medianprops={"color": "black"})
    ax.scatter(x, [r.predicted_ms for r in rows], marker="D", color="tab:blue", zorder=3,
               label="predicted, calibrated")
    ax.scatter(x, [r.predicted_uncal_ms for r in rows], marker="x", color="tab:red", zorder=3,
               label="predicted, uncalibrated")
    ax.set_xticks(x, [r.label for r in rows], rotation=20, ha="right")
    ax.set_ylabel("ms per generated token")
    ax.set_ylim(bottom=0)
    ax.set_title(f"llama.cpp over RPC, {result['name']}: measured (boxes) and predicted")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
