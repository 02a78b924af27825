"""Every Prometheus metric the processes export, read from their own registries.

Each metric is declared once, where its process records it (producer/metrics.py,
streams/metrics.py, enricher/metrics.py). This module only reads those registries, for the
dashboard's and the alert rules' tests and for docs/metrics.md
(`python -m cli.metric_names` rewrites it). The services never import it.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

HISTOGRAM_SUFFIXES: Final = ("_bucket", "_sum", "_count")
DOC: Final = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric as PromQL sees it: counters with their `_total`, histograms by base name."""

    process: str
    name: str
    kind: str
    labels: tuple[str, ...]
    help: str


def _read(process: str, registry: CollectorRegistry) -> list[Metric]:
    out: list[Metric] = []
    # prometheus_client has no public way to read a labelled metric's label names before it has
    # children; the registry's collector map and the wrapper's fields are stable for years.
    for collector in list(registry._collector_to_names):
        if isinstance(collector, MetricWrapperBase):
            kind = str(collector._type)
            name = collector._name + ("_total" if kind == "counter" else "")
            labels = tuple(collector._labelnames)
            out.append(Metric(process, name, kind, labels, str(collector._documentation)))
        else:
            # Our own unlabelled collectors (producer.metrics.LoopHistogram): what they yield.
            for family in collector.collect():
                suffix = "_total" if family.type == "counter" else ""
                found = {k for sample in family.samples for k in sample.labels} - {"le"}
                labels = tuple(sorted(found))
                out.append(
                    Metric(process, family.name + suffix, family.type, labels, family.documentation)
                )
    return out


@functools.cache
def catalog() -> tuple[Metric, ...]:
    """Every metric of the producer, the worker and the enricher, in that order."""
    from enricher.metrics import EnricherMetrics
    from producer.metrics import ProducerMetrics
    from streams.metrics import WorkerMetrics

    return (
        *_read("producer", ProducerMetrics().registry),
        *_read("worker", WorkerMetrics(max_intents=1).registry),
        *_read("enricher", EnricherMetrics().registry),
    )


def names(process: str | None = None) -> frozenset[str]:
    return frozenset(m.name for m in catalog() if process in (None, m.process))


def histograms() -> frozenset[str]:
    return frozenset(m.name for m in catalog() if m.kind == "histogram")


def webhook_outcomes() -> frozenset[str]:
    """The producer's `outcome` label values: one per way a request can end."""
    from producer.metrics import OUTCOMES

    return frozenset(OUTCOMES)


def server_error_outcomes() -> frozenset[str]:
    """The outcomes answered with a 5xx: the sender retries them, operators should look."""
    from producer.metrics import SERVER_ERROR_OUTCOMES

    return SERVER_ERROR_OUTCOMES


def transcript_outcomes() -> frozenset[str]:
    """The enricher's `outcome` label values (a transcript record's status)."""
    from enricher.records import TranscriptStatus

    return frozenset(s.value for s in TranscriptStatus)


def series_names(metrics: frozenset[str]) -> frozenset[str]:
    """The sample names a scrape yields for these metrics (histograms split into three series)."""
    split = histograms()
    out: set[str] = set()
    for name in metrics:
        if name in split:
            out.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
        else:
            out.add(name)
    return frozenset(out)


def labels_of(sample: str) -> frozenset[str]:
    """The label names of a sample name (`_bucket` adds `le`); empty for an unknown metric."""
    labels = {m.name: frozenset(m.labels) for m in catalog()}
    for suffix in HISTOGRAM_SUFFIXES:
        base = sample.removesuffix(suffix)
        if base != sample and base in histograms():
            return labels[base] | (frozenset({"le"}) if suffix == "_bucket" else frozenset())
    return labels.get(sample, frozenset())


def render() -> str:
    """docs/metrics.md."""
    lines = [
        "# Metrics",
        "",
        "Generated from the processes' own registries by `python -m cli.metric_names`;",
        "a unit test fails when this file and the code disagree. Label values are bounded: never a",
        "session id or a phone number.",
    ]
    for process in ("producer", "worker", "enricher"):
        lines += ["", f"## {process}", "", "| metric | type | labels | what |", "|---|---|---|---|"]
        for m in catalog():
            if m.process == process:
                labels = ", ".join(f"`{label}`" for label in m.labels) or "-"
                lines.append(f"| `{m.name}` | {m.kind} | {labels} | {m.help} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    DOC.write_text(render())
    sys.stdout.write(f"wrote {DOC}\n")
