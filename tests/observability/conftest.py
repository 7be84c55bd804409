"""Helpers of the observability tests: reading /metrics the way Prometheus does."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def parse_metrics(text: str) -> dict[str, object]:
    """``/metrics`` text → ``{family name: family}`` (raises on malformed exposition text)."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample_value(families: dict[str, object], sample: str, **labels: str) -> float:
    """The value of one sample (0.0 when the series does not exist yet)."""
    total = 0.0
    for family in families.values():
        for s in family.samples:  # type: ignore[attr-defined]
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total
