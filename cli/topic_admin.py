"""`sessionflow topics`: create the project's topics as the services do, and describe them."""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from sessionflow.errors import SessionflowError
from sessionflow.kafka_security import aiokafka_connection
from sessionflow.settings import KafkaSettings
from sessionflow.topics import DAY_MS, Topics, TopicSpec, ensure_topics

_TIMEOUT_S = 30.0
_SHOWN_CONFIGS = ("retention.ms", "max.message.bytes", "cleanup.policy")


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """One topic as the broker describes it (None: the topic does not exist)."""

    name: str
    partitions: int | None
    replication_factor: int | None
    config: dict[str, str]


def human_ms(value: str) -> str:
    """`604800000` -> `7d`; -1 is Kafka's "forever"."""
    try:
        ms = int(value)
    except ValueError:
        return value
    if ms < 0:
        return "forever"
    for unit, size in (("d", DAY_MS), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def rows(specs: list[TopicSpec], found: dict[str, TopicInfo]) -> list[list[str]]:
    """Table rows: declared vs actual, so a mismatch is visible at a glance."""
    out = []
    for spec in specs:
        info = found.get(spec.name)
        if info is None or info.partitions is None:
            out.append([spec.name, "missing", f"{spec.partitions} declared", "-", "-", "-"])
            continue
        retention = info.config.get("retention.ms", "")
        parts = str(info.partitions)
        if info.partitions != spec.partitions:
            parts += f" (declared {spec.partitions})"
        out.append(
            [
                spec.name,
                "ok",
                parts,
                str(info.replication_factor),
                human_ms(retention) if retention else "-",
                info.config.get("max.message.bytes", "-"),
            ]
        )
    return out


async def describe_topics(settings: KafkaSettings, names: list[str]) -> dict[str, TopicInfo]:
    admin = AIOKafkaAdminClient(
        **aiokafka_connection(settings),
        request_timeout_ms=int(_TIMEOUT_S * 1000),
    )
    await asyncio.wait_for(admin.start(), _TIMEOUT_S)
    try:
        existing = set(await admin.list_topics())
        present = [n for n in names if n in existing]
        if not present:
            return {}
        described = await admin.describe_topics(present)
        responses = await admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, n, dict.fromkeys(_SHOWN_CONFIGS))
                for n in present
            ]
        )
        configs: dict[str, dict[str, str]] = {}
        for response in responses:
            for _code, _msg, _type, name, entries in response.resources:
                configs[name] = {entry[0]: entry[1] for entry in entries}
        found = {}
        for d in described:
            if d["error_code"] != 0:
                continue
            replicas = {len(p["replicas"]) for p in d["partitions"]}
            found[d["topic"]] = TopicInfo(
                name=d["topic"],
                partitions=len(d["partitions"]),
                replication_factor=max(replicas) if replicas else None,
                config=configs.get(d["topic"], {}),
            )
        return found
    finally:
        await admin.close()


def render_table(table: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    view = Table(title="sessionflow topics")
    for heading in ("topic", "state", "partitions", "replication", "retention", "max bytes"):
        view.add_column(heading)
    for row in table:
        view.add_row(*row)
    # Off a terminal rich assumes 80 columns and would cut the topic names.
    Console(width=None if sys.stdout.isatty() else 200).print(view)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--describe",
        action="store_true",
        help="only describe the topics; create nothing",
    )


def run(args: argparse.Namespace) -> int:
    settings = KafkaSettings()
    specs = Topics.for_settings(settings).specs(settings)
    try:
        if not args.describe:
            asyncio.run(ensure_topics(settings, specs, timeout_s=_TIMEOUT_S))
        found = asyncio.run(describe_topics(settings, [s.name for s in specs]))
    except (SessionflowError, KafkaError, TimeoutError, OSError) as exc:
        sys.stderr.write(f"sessionflow topics: {exc}\n")
        return 1
    table = rows(specs, found)
    render_table(table)
    # --describe reports a missing or mismatched topic with a non-zero exit, for scripts.
    return 0 if all(row[1] == "ok" and "declared" not in row[2] for row in table) else 1
