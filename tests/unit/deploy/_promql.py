"""Just enough PromQL reading to find the metric and label names a query refers to."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cli import metric_names

# Grafana's interval variables, replaced by a plausible value so that the query parses.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
# Series that Prometheus itself writes for every target.
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
TARGET_LABELS = frozenset({"job", "instance"})
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"offset", "bool", "inf", "nan"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


@dataclass
class Refs:
    """What one expression names: metrics, label matchers per metric, grouping labels."""

    metrics: set[str] = field(default_factory=set)
    matchers: list[tuple[str, str, str, str]] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)


def expand_grafana(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def references(expr: str) -> Refs:
    """The names an expression refers to (metric, label, op, value for each matcher)."""
    refs = Refs()
    expr = expand_grafana(expr)
    for m in _SELECTOR.finditer(expr):
        metric = m.group(1) or ""
        for label, op, value in _MATCHER.findall(m.group(2)):
            refs.matchers.append((metric, label, op, value))
    expr = _SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", expr)
    for m in _GROUPING.finditer(expr):
        refs.grouping.update(part.strip() for part in m.group(2).split(",") if part.strip())
    expr = _GROUPING.sub(" ", expr)
    expr = _STRING.sub(" ", _RANGE.sub(" ", expr))
    for m in _NAME.finditer(expr):
        name = m.group(0)
        follows = expr[m.end() :].lstrip()
        if name.lower() in _KEYWORDS or follows.startswith("("):
            continue  # a keyword or a function call
        if m.start() > 0 and (expr[m.start() - 1].isdigit() or expr[m.start() - 1] == "."):
            continue  # the exponent or unit of a number literal, e.g. 1e3
        refs.metrics.add(name)
    return refs


def known_labels(metric: str) -> frozenset[str]:
    return metric_names.labels_of(metric) | TARGET_LABELS
