"""bench.txn_fanout against the real broker: both ways of committing deliver every record once."""

from __future__ import annotations

import pytest

from bench import txn_fanout
from sessionflow.topics import topic_names
from tests.polling import wait_until

pytestmark = pytest.mark.integration


async def test_both_variants_commit_every_record_once_and_leave_no_topics(
    kafka_bootstrap: str, unique: str
) -> None:
    prefix = f"t-{unique}."
    found = await txn_fanout.measure(kafka_bootstrap, prefix, seconds=1.0, rounds=1)
    for variant in ("per_partition", "one"):
        [round_] = found["rounds"][variant]
        assert round_["commits"] > 0
        assert round_["records_read"] == round_["records_sent"]
        assert round_["send_to_read"]["count"] > 0
        assert round_["commit"]["p99_ms"] > 0
    assert found["figures"]["commit_p99_ratio_one_to_per_partition"] is not None

    async def no_topics_left() -> bool:
        return not [t for t in await topic_names(kafka_bootstrap) if t.startswith(prefix)]

    await wait_until(no_topics_left, "the measurement's topics deleted")
