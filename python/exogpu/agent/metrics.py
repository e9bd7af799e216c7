"""The agent's /v1/metrics, exposed with prometheus_client.

The agent decides per request which families and samples the caller may see
(devices it may monitor; node-wide counters only with admin.policy) and hands
them here; the exposition itself, escaping and number formatting included, is
prometheus_client's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Family", "exposition"]


class Family:
    """One metric family being filled: name, type, help, label names, samples."""

    def __init__(self, name: str, kind: str, help_text: str, labels: Iterable[str] = ()):
        if kind not in ("gauge", "counter"):
            raise ValueError(f"metric kind must be gauge or counter, not {kind!r}")
        self.name, self.kind, self.help = name, kind, help_text
        self.labels = list(labels)
        self.samples: list[tuple[list[str], float]] = []

    def add(self, value: float, labels: Mapping[str, str] | None = None) -> Family:
        labels = labels or {}
        if sorted(labels) != sorted(self.labels):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {sorted(self.labels)}")
        self.samples.append(([labels[k] for k in self.labels], value))
        return self

    def metric(self) -> Metric:
        family: GaugeMetricFamily | CounterMetricFamily
        if self.kind == "gauge":
            family = GaugeMetricFamily(self.name, self.help, labels=self.labels)
        else:
            family = CounterMetricFamily(self.name, self.help, labels=self.labels)
        for values, value in self.samples:
            family.add_metric(values, value)
        return family


class _Snapshot:
    """A collector over families computed for one request."""

    def __init__(self, families: Iterable[Family]):
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        for f in self._families:
            yield f.metric()


def exposition(families: Iterable[Family]) -> bytes:
    """Prometheus text format (0.0.4) of `families`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(families))
    return generate_latest(registry)
