"""Pure figures: percentiles, ratios and goal checks, shared by the benchmarks and the report."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between closest ranks; None if empty."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be within [0, 100], got {q}")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50/p99/p999/max in milliseconds, rounded to 0.01 ms."""

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000.0, 2)

    return {
        "count": float(len(seconds)),
        "p50_ms": ms(percentile(seconds, 50)),
        "p99_ms": ms(percentile(seconds, 99)),
        "p999_ms": ms(percentile(seconds, 99.9)),
        "max_ms": ms(max(seconds) if seconds else None),
    }


def bucket_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The q-quantile (0..1) of a Prometheus histogram from its cumulative (le, count) buckets, as
    PromQL's histogram_quantile reads them (linear within a bucket; the last finite bound when
    it falls in +Inf); None when empty."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


@dataclass(frozen=True, slots=True)
class ScrapedHistogram:
    """One Prometheus histogram as a scrape showed it: cumulative (le, count) buckets, count, sum."""

    buckets: tuple[tuple[float, float], ...]
    count: float
    total: float

    @classmethod
    def read(cls, metrics_text: str, name: str) -> ScrapedHistogram:
        """The histogram `name` (its unlabelled series) from an exposition; empty if absent."""
        buckets: list[tuple[float, float]] = []
        count = total = 0.0
        for family in text_string_to_metric_families(metrics_text):
            if family.name != name:
                continue
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    buckets.append((float(sample.labels["le"]), sample.value))
                elif sample.name.endswith("_count"):
                    count = sample.value
                elif sample.name.endswith("_sum"):
                    total = sample.value
        return cls(tuple(sorted(buckets)), count, total)

    def since(self, earlier: ScrapedHistogram) -> ScrapedHistogram:
        """What was observed between `earlier`'s scrape and this one."""
        before = dict(earlier.buckets)
        return ScrapedHistogram(
            tuple((le, n - before.get(le, 0.0)) for le, n in self.buckets),
            self.count - earlier.count,
            self.total - earlier.total,
        )

    def summary_ms(self) -> dict[str, float | None]:
        """How many, their mean, and p50/p99 read from the buckets as PromQL would, in ms."""

        def ms(seconds: float | None) -> float | None:
            return None if seconds is None else round(seconds * 1000, 1)

        return {
            "count": self.count,
            "mean_ms": ms(self.total / self.count) if self.count else None,
            "p50_ms": ms(bucket_quantile(0.5, self.buckets)),
            "p99_ms": ms(bucket_quantile(0.99, self.buckets)),
        }


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline rounded to 3 places; None when either is missing or the baseline is 0."""
    if value is None or baseline is None or baseline <= 0:
        return None
    return round(value / baseline, 3)


def extrapolate(at_zero: float, at_n: float, n: int, target: int) -> float:
    """Linear extrapolation from (0, at_zero) and (n, at_n) to `target`."""
    if n <= 0:
        raise ValueError("n must be positive")
    return at_zero + (at_n - at_zero) * target / n


@dataclass(frozen=True, slots=True)
class Goal:
    key: str
    label: str
    limit: float
    at_least: bool  # True: value >= limit; False: value < limit
    baseline_key: str | None = None  # also value >= 0.5 x this figure
    baseline_share: float = 0.5

    def met(self, results: dict[str, object]) -> bool | None:
        """True/False, or None when the figure is missing."""
        value = results.get(self.key)
        if not isinstance(value, int | float):
            return None
        ok = value >= self.limit if self.at_least else value < self.limit
        if self.baseline_key is not None:
            base = results.get(self.baseline_key)
            if not isinstance(base, int | float):
                return None
            ok = ok and value >= self.baseline_share * base
        return ok


GOALS = (
    Goal("producer_rps", "≥ 10,000/s and ≥ 0.5 x baseline", 10_000, True, "producer_baseline_rps"),
    Goal("producer_p99_ms_half_load", "< 10 ms", 10, False),
    Goal("worker_eps_eos", "≥ 20,000/s and ≥ 0.5 x baseline", 20_000, True, "worker_baseline_eps"),
    Goal("worker_share_of_floor_eos", "≥ 0.8 x the no-op Faust agent", 0.8, True),
    Goal("e2e_p99_ms_alo", "< 50 ms", 50, False),
    Goal("e2e_p99_ms_eos", "≤ commit interval (100 ms) + 50 ms", 150.01, False),
    Goal("state_rss_mb_1m", "< 300 MB", 300, False),
    Goal("state_restore_s_1m", "< 30 s", 30, False),
    Goal("state_failover_s", "< 10 s (standby replicas on)", 10, False),
)
