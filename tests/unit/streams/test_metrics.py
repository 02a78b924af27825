"""The worker's metrics as operators read them from the registry."""

from __future__ import annotations

from streams.metrics import WorkerMetrics


def test_a_commit_is_observed_as_its_duration() -> None:
    metrics = WorkerMetrics(max_intents=5)
    metrics.observe_commit(0.03, partitions=12)
    metrics.observe_commit(1.7, partitions=1)
    value = metrics.registry.get_sample_value
    assert value("sessionflow_commit_seconds_count") == 2
    assert value("sessionflow_commit_seconds_sum") == 1.73
    assert value("sessionflow_commit_seconds_bucket", {"le": "0.05"}) == 1
    assert value("sessionflow_commit_seconds_bucket", {"le": "1.0"}) == 1
    assert value("sessionflow_commit_seconds_bucket", {"le": "2.5"}) == 2
