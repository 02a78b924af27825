"""The worker's one settings object (`SESSIONFLOW_*` variables)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, model_validator

from sessionflow.settings import KafkaSettings, Port


class WorkerSettings(KafkaSettings):
    """Everything `sessionflow worker` reads from the environment, loaded once at start."""

    app_id: str = Field(default="sessionflow", pattern=r"^[A-Za-z0-9._-]+$")
    worker_host: str = "0.0.0.0"  # noqa: S104  (the metrics endpoint is scraped from outside)
    worker_port: Port = 6066
    # How the other workers reach this one's web server (they forward GET /sessions/{id} to the
    # partition's owner): in Kubernetes the pod's address. Unset: this host's name and the port,
    # or the host itself when it is a specific address.
    worker_url: str | None = Field(default=None, pattern=r"^https?://[^/]+/?$")
    data_dir: Path = Path("var/worker")
    # "rocksdb" keeps the table on disk under data_dir; "memory" is for tests and trials.
    table_store: Literal["rocksdb", "memory"] = "rocksdb"
    # All RocksDB memory of the table (every partition, active and standby): one block cache,
    # with the memtables charged to it (streams/runtime/store.py).
    rocksdb_memory_mb: int = Field(default=64, ge=8, le=65_536)
    processing_guarantee: Literal["exactly_once", "at_least_once"] = "exactly_once"
    standby_replicas: int = Field(default=1, ge=0, le=10)
    # 48 h: longer than the sender's ~27 h retry horizon, so a retry never finds its state gone.
    session_ttl_seconds: float = Field(default=172_800.0, gt=0)
    # How often each worker checks its own partitions for sessions past the TTL.
    expiry_interval_seconds: float = Field(default=5.0, gt=0)
    # How long after receiving a webhook the producer may still append it: the sender's 15 s
    # deadline. A half expires this much after its TTL, once no partner can still be on the way.
    expiry_grace_seconds: float = Field(default=15.0, ge=0)
    # Exactly-once commits (and so output visibility) happen this often: the floor of end-to-end latency.
    commit_interval_seconds: float = Field(default=0.1, gt=0)
    # Exactly-once: one transaction per worker (KIP-447: the group's generation fences it; a third
    # of the commit's time and CPU of one per partition, and a dead worker's open transaction holds
    # its partitions' readers until transaction_timeout_seconds; streams/runtime/worker_txn.py) or
    # one per partition (each partition's next owner fences the last by its transactional id).
    transaction_scope: Literal["worker", "partition"] = "worker"
    # Scope "worker": names this worker's transaction, so that the worker restarted aborts what it
    # left open at once (a StatefulSet's pod name); with static_membership, its member in the
    # group too. Unset: this host's name and worker_port.
    worker_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$")
    # Scope "worker": how long the broker lets a transaction stay open before it aborts it (and
    # fences the producer): what a dead worker's partitions wait at most before they move on.
    transaction_timeout_seconds: float = Field(default=10.0, ge=1.0, le=900.0)
    # How long the group waits for a silent worker (killed, frozen) before its partitions move:
    # the fail-over time after a kill -9. Faust's default is 60 s.
    consumer_session_timeout_seconds: float = Field(default=6.0, ge=6.0, le=300.0)
    # Static group membership (KIP-345) under worker_id: a worker that stops and starts again
    # within the session timeout keeps its partitions, and the others do not rebalance. A worker
    # that stops also holds its partitions for the session timeout (it does not leave the group):
    # usually slower than moving them (README, "Roll the workers"; bench B5).
    static_membership: bool = False
    # How long a fetch may wait at the broker for records (streams/runtime/consumer.py, 8): what a
    # raw record can wait behind a fetch of partitions with nothing new. Faust's is 1.5 s.
    fetch_max_wait_ms: int = Field(default=20, ge=1, le=1500)
    max_intents: int = Field(default=50, ge=1)
    # The most records one fetch hands the processor (all partitions together): a batch, applied
    # a partition at a time, with its outputs and changelog sent as record batches.
    batch_max_records: int = Field(default=1000, ge=1, le=100_000)
    # A partition whose committed offset stands still this long while records wait behind it
    # makes the worker not ready (sessionflow_partition_stalled_seconds shows it sooner); so does
    # a broker that has not answered a read of the partitions' ends for this long.
    stall_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _check_static_membership(self) -> Self:
        if self.static_membership and not self.worker_id:
            # A name made up from the host would change with the pod: each start a new member,
            # and the last one's partitions idle until its session timeout.
            raise ValueError(
                "SESSIONFLOW_STATIC_MEMBERSHIP needs SESSIONFLOW_WORKER_ID, a name that stays the"
                " same when the worker starts again (a StatefulSet's pod name)"
            )
        return self

    @property
    def group_instance_id(self) -> str | None:
        """The worker's static member name in the group, or None (dynamic membership)."""
        return self.worker_key if self.static_membership else None

    @property
    def faust_log_level(self) -> str:
        return {"WARNING": "warn", "CRITICAL": "crit"}.get(self.log_level, self.log_level.lower())

    @property
    def canonical_url(self) -> str:
        if self.worker_url:
            return self.worker_url.rstrip("/")
        wildcard = self.worker_host in {"0.0.0.0", "::", ""}  # noqa: S104  (a comparison)
        host = socket.gethostname() if wildcard else self.worker_host
        return f"http://{host}:{self.worker_port}"

    @property
    def worker_key(self) -> str:
        """What names this worker's transaction (scope "worker")."""
        if self.worker_id:
            return self.worker_id
        host = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname())
        return f"{host}-{self.worker_port}"

    @property
    def ttl_ms(self) -> int:
        return int(self.session_ttl_seconds * 1000)
