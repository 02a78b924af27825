"""One benchmark run: its broker, its unique topic namespace, its scratch folder and knobs."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench.proc import REPO
from bench.progress import ProgressGuard
from bench.webhooks import SECRET
from sessionflow.settings import KafkaSettings
from sessionflow.topics import Topics, delete_topics, ensure_topics


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass
class Context:
    bootstrap: str = field(
        default_factory=lambda: os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    stamp: str = field(default_factory=lambda: time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    partitions: int = field(default_factory=lambda: _env_int("BENCH_PARTITIONS", 12))
    seconds: float = field(default_factory=lambda: _env_float("BENCH_SECONDS", 8.0))
    concurrency: tuple[int, ...] = field(
        default_factory=lambda: tuple(
            int(c) for c in os.environ.get("BENCH_CONCURRENCY", "16,64,256").split(",")
        )
    )
    worker_sessions: int = field(default_factory=lambda: _env_int("BENCH_WORKER_SESSIONS", 8000))
    e2e_rate: float = field(default_factory=lambda: _env_float("BENCH_E2E_RATE", 400.0))
    e2e_seconds: float = field(default_factory=lambda: _env_float("BENCH_E2E_SECONDS", 15.0))
    state_sessions: int = field(default_factory=lambda: _env_int("BENCH_STATE_SESSIONS", 1_000_000))
    profile: bool = field(default_factory=lambda: os.environ.get("BENCH_PROFILE", "1") != "0")
    # A partition that stands still this long behind its end while the worker is ready fails the
    # benchmark as a correctness error (bench/progress.py).
    stall_s: float = field(default_factory=lambda: _env_float("BENCH_STALL_SECONDS", 30.0))

    @property
    def prefix(self) -> str:
        """Every topic and app id of this run starts with it (SESSIONFLOW_TOPIC_NAMESPACE)."""
        return f"bench-{self.stamp}-{self.run_id}."

    @property
    def workdir(self) -> Path:
        path = REPO / "var" / "bench" / f"{self.stamp}-{self.run_id}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def namespace(self, part: str) -> str:
        return f"{self.prefix}{part}."

    def guard(self, namespace: str, worker_port: int) -> ProgressGuard:
        """Watches the raw topic's partitions of the worker running in `namespace`."""
        return ProgressGuard(
            bootstrap=self.bootstrap,
            group=f"{namespace}sessionflow",
            topic=self.topics(namespace).raw,
            readyz=f"http://127.0.0.1:{worker_port}/readyz",
            stall_s=self.stall_s,
        )

    def settings(self, namespace: str) -> KafkaSettings:
        return KafkaSettings(
            kafka_bootstrap_servers=self.bootstrap,
            partitions=self.partitions,
            topic_namespace=namespace,
        )

    def topics(self, namespace: str) -> Topics:
        return Topics.for_settings(self.settings(namespace))

    async def make_topics(self, namespace: str) -> Topics:
        settings = self.settings(namespace)
        topics = Topics.for_settings(settings)
        await ensure_topics(settings, topics.specs(settings))
        return topics

    def env(self, namespace: str, **extra: str) -> dict[str, str]:
        """Environment of a producer or worker in `namespace`."""
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "SESSIONFLOW_TOPIC_NAMESPACE": namespace,
            "SESSIONFLOW_PARTITIONS": str(self.partitions),
            "SESSIONFLOW_LOG_LEVEL": "WARNING",
            "SESSIONFLOW_WEBHOOK_SECRETS": SECRET,
            "SESSIONFLOW_HTTP_HOST": "127.0.0.1",
            "SESSIONFLOW_ADMIN_HOST": "127.0.0.1",
            "SESSIONFLOW_WORKER_HOST": "127.0.0.1",
            **extra,
        }

    async def delete_own_topics(self) -> int:
        """Delete this run's topics (and only those: they all carry the run's prefix)."""
        return len(await delete_topics(self.bootstrap, lambda name: name.startswith(self.prefix)))

    def cleanup(self) -> None:
        """Drop the run's RocksDB folders (they can be large); logs stay for reading."""
        for data in self.workdir.glob("data-*"):
            shutil.rmtree(data, ignore_errors=True)
        try:
            asyncio.run(asyncio.wait_for(self.delete_own_topics(), 60))
        except Exception as exc:  # cleanup must not hide the results
            print(f"bench: could not delete this run's topics: {exc!r}")
