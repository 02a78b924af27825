"""The loop histogram exposes exactly what prometheus_client's Histogram would."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from producer.metrics import LoopHistogram

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
