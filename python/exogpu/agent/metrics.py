"""Prometheus text exposition (format 0.0.4) for the agent's /v1/metrics."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["Metric", "render"]

Labels = Mapping[str, str]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metric:
    """One metric family: name, type, help and its samples."""

    def __init__(self, name: str, kind: str, help_text: str):
        if kind not in ("gauge", "counter"):
            raise ValueError(f"metric kind must be gauge or counter, not {kind!r}")
        self.name, self.kind, self.help = name, kind, help_text
        self.samples: list[tuple[Labels, float]] = []

    def add(self, value: float, **labels: str) -> Metric:
        self.samples.append((labels, value))
        return self


def render(metrics: Iterable[Metric]) -> str:
    lines: list[str] = []
    for m in metrics:
        lines.append(f"# HELP {m.name} {_escape(m.help)}")
        lines.append(f"# TYPE {m.name} {m.kind}")
        for labels, value in m.samples:
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            number = repr(float(value)) if value != int(value) else str(int(value))
            lines.append(f"{m.name}{{{text}}} {number}" if text else f"{m.name} {number}")
    return "\n".join(lines) + "\n"
