"""bench.txn_fanout against the real broker: both ways of committing deliver every record once,
and a round measures commits however long its first one takes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition

from bench import txn_fanout
from sessionflow.topics import topic_names
from tests.polling import wait_until

pytestmark = pytest.mark.integration


async def test_both_variants_commit_every_record_once_and_leave_no_topics(
    kafka_bootstrap: str, unique: str
) -> None:
    prefix = f"t-{unique}."
    found = await txn_fanout.measure(kafka_bootstrap, prefix, seconds=1.0, rounds=1)
    _each_round_measured(found)

    async def no_topics_left() -> bool:
        return not [t for t in await topic_names(kafka_bootstrap) if t.startswith(prefix)]

    await wait_until(no_topics_left, "the measurement's topics deleted")


def _each_round_measured(found: dict[str, Any]) -> None:
    for variant in ("per_partition", "one"):
        [round_] = found["rounds"][variant]
        assert round_["commits"] > 0
        assert round_["records_read"] == round_["records_sent"]
        assert round_["send_to_read"]["count"] > 0
        assert round_["commit"]["p99_ms"] > 0
    assert found["figures"]["commit_p99_ratio_one_to_per_partition"] is not None


async def test_a_first_commit_longer_than_the_round_still_leaves_commits_measured(
    kafka_bootstrap: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clean clone's first test met a broker just started: the twelve producers' first
    transactions were retried (NotEnoughReplicas, KIP-890's check) past the warm-up and the whole
    1 s round, and the round measured no commit. The warm-up lasts the first commit now."""
    seconds = 1.0
    commit, slowed = txn_fanout.Fanout.commit, set()

    async def first_one_slow(
        fanout: txn_fanout.Fanout, offsets: dict[int, dict[TopicPartition, int]]
    ) -> None:
        if id(fanout) not in slowed:  # each round's variant has a Fanout of its own
            slowed.add(id(fanout))
            await asyncio.sleep(txn_fanout.WARMUP_S + seconds + 0.5)
        await commit(fanout, offsets)

    monkeypatch.setattr(txn_fanout.Fanout, "commit", first_one_slow)
    found = await txn_fanout.measure(kafka_bootstrap, f"t-{unique}.", seconds=seconds, rounds=1)
    _each_round_measured(found)
