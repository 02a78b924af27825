"""sessionflow.topics against the broker: counting its partitions, deleting a run's own topics
and only those."""

from __future__ import annotations

import pytest

from sessionflow.topics import delete_topics, partition_count, topic_names
from tests.kafka_helpers import make_topics
from tests.polling import wait_until

pytestmark = pytest.mark.integration


async def test_only_the_chosen_topics_are_deleted(kafka_bootstrap: str, unique: str) -> None:
    mine = [f"t-{unique}.run-a.raw", f"t-{unique}.run-a.dlq"]
    other = f"t-{unique}.run-b.raw"
    await make_topics(kafka_bootstrap, *mine, other, partitions=1)

    deleted = await delete_topics(kafka_bootstrap, lambda name: f"{unique}.run-a." in name)

    assert sorted(deleted) == sorted(mine)

    async def only_the_other_left() -> bool:
        return {t for t in await topic_names(kafka_bootstrap) if unique in t} == {other}

    await wait_until(only_the_other_left, "only the unchosen topic left")
    assert await delete_topics(kafka_bootstrap, lambda name: f"{unique}.run-a." in name) == []


async def test_the_broker_partitions_are_counted(kafka_bootstrap: str, unique: str) -> None:
    before = await partition_count(kafka_bootstrap)
    await make_topics(kafka_bootstrap, f"t-{unique}.one", f"t-{unique}.two", partitions=3)
    assert await partition_count(kafka_bootstrap) == before + 6
