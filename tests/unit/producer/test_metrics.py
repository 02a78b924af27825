"""The loop histogram exposes exactly what prometheus_client's Histogram would; the client
replacement counter reads the publisher's counts at each scrape."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from producer.metrics import ClientsReplaced, LoopHistogram

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 1, 2.5, 10)


@given(
    st.lists(
        st.sampled_from(BUCKETS) | st.floats(min_value=0, max_value=100, allow_nan=False),
        max_size=50,
    )
)
def test_the_same_observations_give_the_same_exposition(amounts: list[float]) -> None:
    theirs, ours = CollectorRegistry(auto_describe=True), CollectorRegistry(auto_describe=True)
    reference = Histogram("x_seconds", "Doc.", buckets=BUCKETS, registry=theirs)
    histogram = LoopHistogram("x_seconds", "Doc.", BUCKETS, ours)
    for amount in amounts:
        reference.observe(amount)
        histogram.observe(amount)
    # The server disables `_created` series; the library may still have them on here.
    expected = [ln for ln in generate_latest(theirs).splitlines() if b"_created" not in ln]
    assert generate_latest(ours).splitlines() == expected


def test_replaced_clients_are_a_counter_read_at_each_scrape() -> None:
    registry = CollectorRegistry(auto_describe=True)
    replaced = ClientsReplaced(registry)
    samples = [ln for ln in generate_latest(registry).splitlines() if not ln.startswith(b"#")]
    assert samples == [
        b'sessionflow_producer_kafka_clients_replaced_total{reason="fatal"} 0.0',
        b'sessionflow_producer_kafka_clients_replaced_total{reason="unreachable"} 0.0',
    ], "every series from the start, before a publisher is tracked"
    counts = {"fatal": 0, "unreachable": 0}
    replaced.track(lambda: counts)
    counts["unreachable"] += 2
    lines = generate_latest(registry).decode().splitlines()
    assert "# TYPE sessionflow_producer_kafka_clients_replaced_total counter" in lines
    assert 'sessionflow_producer_kafka_clients_replaced_total{reason="fatal"} 0.0' in lines
    assert 'sessionflow_producer_kafka_clients_replaced_total{reason="unreachable"} 2.0' in lines
