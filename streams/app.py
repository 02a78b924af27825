"""The Faust app: one per worker process, built from the worker's settings.

This module owns the app object; `streams.register` registers the processor, the timer and the
web pages on it explicitly, from the entry point (`streams.worker`).
"""

from __future__ import annotations

import faust
import mode
from faust.types.auth import CredentialsT

from sessionflow.kafka_security import ssl_context, uses_sasl, uses_tls
from streams.runtime.app import App, WorkerTransactionSettings
from streams.settings import WorkerSettings


def create_app(settings: WorkerSettings) -> App:
    # A bare rocksdb:// keeps each partition's database under datadir (the URL's path would
    # otherwise name a folder beside it).
    store = "rocksdb://" if settings.table_store == "rocksdb" else "memory://"
    return App(
        f"{settings.topic_namespace}{settings.app_id}",
        broker=f"kafka://{settings.kafka_bootstrap_servers}",
        # Faust's own clients (its consumer, its admin requests); the runtime's producers take
        # the same options from streams.register.
        broker_credentials=credentials(settings),
        # The group lists each member under it: operators see the worker, and a worker sees
        # another one under its own id (streams/runtime/namesakes.py).
        broker_client_id=settings.worker_key,
        store=store,
        datadir=str(settings.data_dir),
        rocksdb_memory_bytes=settings.rocksdb_memory_mb * 1024**2,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        worker_transaction=(
            WorkerTransactionSettings(
                key=settings.worker_key,
                timeout_ms=int(settings.transaction_timeout_seconds * 1000),
            )
            if settings.transaction_scope == "worker"
            else None
        ),
        processing_guarantee=settings.processing_guarantee,
        table_standby_replicas=settings.standby_replicas,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_commit_interval=settings.commit_interval_seconds,
        broker_session_timeout=settings.consumer_session_timeout_seconds,
        # A survivor learns of a rebalance from its next heartbeat: at a tenth of the session
        # timeout (0.6 s by default) it rejoins within that after a dead worker is noticed.
        broker_heartbeat_interval=settings.consumer_session_timeout_seconds / 10,
        consumer_group_instance_id=settings.group_instance_id,
        web_host=settings.worker_host,
        web_port=settings.worker_port,
        # The URL the group's assignment advertises: other workers forward to it.
        canonical_url=settings.canonical_url,
        web_in_thread=False,
        # An exception escaping the agent stops the worker instead of restarting the agent past
        # the failed record (faust-streaming #527: that record's offset would be acked, lost).
        # The supervisor (Kubernetes, make run) restarts the process; the transaction replays it.
        agent_supervisor=mode.CrashingSupervisor,
        # The project's topics are made by sessionflow.topics with declared configs; Faust only
        # declares its own internal topics (the table's changelog).
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=settings.batch_max_records,
    )


def credentials(settings: WorkerSettings) -> CredentialsT | None:
    """Faust's form of the connection sessionflow/kafka_security.py describes."""
    if uses_sasl(settings):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=ssl_context(settings),
        )
    if uses_tls(settings):
        return faust.SSLCredentials(ssl_context(settings))
    return None
