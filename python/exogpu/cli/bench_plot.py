"""The bandwidth-versus-size plot of `exogpu bench memory --plot`."""

from __future__ import annotations

from pathlib import Path

from exogpu.probe import MemoryProbe


def plot_bandwidth(result: MemoryProbe, path: Path) -> None:
    """One line per copy kind: median bandwidth against copy size (log x),
    with error bars from the slowest to the fastest sample."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for kind in result.kinds():
        points = sorted(result.of_kind(kind), key=lambda c: c.bytes)
        median = [c.bandwidth / 1e9 for c in points]
        below = [m - c.bandwidth_min / 1e9 for m, c in zip(median, points, strict=True)]
        above = [c.bandwidth_max / 1e9 - m for m, c in zip(median, points, strict=True)]
        ax.errorbar(
            [c.bytes for c in points],
            median,
            yerr=[below, above],
            marker="o",
            markersize=3,
            capsize=2,
            elinewidth=0.7,
            label=f"{kind} ({points[0].timing.replace('_', ' ')})",
        )
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(sorted({c.bytes for c in result.copies})))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: _size_label(x)))
    ax.set_xlabel("copy size")
    ax.set_ylabel("bandwidth (GB/s, bytes counted once)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"{result.device}: copy bandwidth (median; bars: min..max of samples)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _size_label(x: float) -> str:
    n = round(x)
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= size:
            return f"{n // size}{unit}"
    return f"{n}"
