"""The benchmarks' pure figures: percentiles, ratios, extrapolation and goal checks."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bench.stats import (
    GOALS,
    Goal,
    ScrapedHistogram,
    bucket_quantile,
    extrapolate,
    latency_summary,
    percentile,
    ratio,
)


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile([7.0], 99.9) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="within"):
        percentile(values, 101)


def test_latency_summary_is_in_milliseconds() -> None:
    summary = latency_summary([0.001 * i for i in range(1, 1001)])
    assert summary["count"] == 1000
    assert summary["p50_ms"] == pytest.approx(500.5)
    assert summary["p99_ms"] == pytest.approx(990.01)
    assert summary["max_ms"] == 1000.0
    assert latency_summary([])["p99_ms"] is None


def test_ratio_and_extrapolation() -> None:
    assert ratio(5.0, 20.0) == 0.25
    assert ratio(None, 20.0) is None
    assert ratio(5.0, 0.0) is None
    assert extrapolate(80.0, 120.0, 20_000, 1_000_000) == pytest.approx(2080.0)
    with pytest.raises(ValueError, match="positive"):
        extrapolate(0.0, 1.0, 0, 10)


def test_goals_check_the_limit_and_the_baseline_share() -> None:
    goal = Goal("x", "", 100, True, "base")
    assert goal.met({"x": 150, "base": 200}) is True
    assert goal.met({"x": 150, "base": 400}) is False  # below half of the baseline
    assert goal.met({"x": 50, "base": 60}) is False
    assert goal.met({"x": None, "base": 60}) is None
    below = Goal("p99", "", 25, False)
    assert below.met({"p99": 24.9}) is True
    assert below.met({"p99": 25}) is False
    assert {g.key for g in GOALS} >= {"producer_rps", "worker_eps_eos", "state_restore_s_1m"}


def test_bucket_quantile_reads_cumulative_buckets_as_promql_does() -> None:
    inf = float("inf")
    buckets = [(0.05, 50.0), (0.1, 90.0), (0.25, 100.0), (inf, 100.0)]
    assert bucket_quantile(0.5, buckets) == 0.05
    assert bucket_quantile(0.7, buckets) == pytest.approx(
        0.075
    )  # halfway between 50 and 90 in (0.05, 0.1]
    assert bucket_quantile(0.99, buckets) == pytest.approx(0.235)
    assert bucket_quantile(0.99, [(0.1, 0.0), (inf, 4.0)]) == 0.1  # in +Inf: the last bound
    assert bucket_quantile(0.5, [(0.1, 0.0), (inf, 0.0)]) is None


def test_a_scraped_histogram_is_read_and_differenced_between_two_scrapes() -> None:
    inf = float("inf")
    registry = CollectorRegistry()
    seconds = Histogram("op_seconds", "An operation", buckets=(0.01, 0.1, 1.0), registry=registry)
    other = Histogram("other_seconds", "Another", buckets=(1.0,), registry=registry)
    for value in (0.005, 0.05):
        seconds.observe(value)
    other.observe(0.5)
    before = ScrapedHistogram.read(generate_latest(registry).decode(), "op_seconds")
    for value in (0.05, 0.05, 0.5, 5.0):
        seconds.observe(value)
    after = ScrapedHistogram.read(generate_latest(registry).decode(), "op_seconds")

    assert before.buckets == ((0.01, 1.0), (0.1, 2.0), (1.0, 2.0), (inf, 2.0))
    assert before.count == 2.0
    assert before.total == pytest.approx(0.055)
    between = after.since(before)
    assert between.buckets == ((0.01, 0.0), (0.1, 2.0), (1.0, 3.0), (inf, 4.0))
    assert between.summary_ms() == {
        "count": 4.0,
        "mean_ms": pytest.approx(1400.0),
        "p50_ms": 100.0,  # the 2nd of 4 ends the (0.01, 0.1] bucket
        "p99_ms": 1000.0,  # in +Inf: the last finite bound
    }
    assert ScrapedHistogram.read("", "op_seconds").summary_ms()["p99_ms"] is None
