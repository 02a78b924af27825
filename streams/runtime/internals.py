"""The internals of faust-streaming and aiokafka that streams.runtime relies on, one entry each.

Each `Requirement` names what the runtime overrides or reads, why, and how to tell that the
installed library still has it (its method, its signature, the calls in its source, or the live
app's objects). streams/runtime/compat.py checks every entry before the worker starts. It is one
table on purpose, longer than the house's 400 lines: every internal the worker depends on, in one
place to read when a library is upgraded.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import faust
import rocksdict
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.cluster import ClusterMetadata
from aiokafka.consumer.fetcher import Fetcher as AIOKafkaFetcher
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.consumer.subscription_state import SubscriptionState, TopicPartitionState
from aiokafka.producer.message_accumulator import BatchBuilder, MessageAccumulator, MessageBatch
from aiokafka.producer.sender import Sender as AIOKafkaSender
from aiokafka.producer.sender import SendProduceReqHandler, TxnOffsetCommitHandler
from aiokafka.producer.transaction_manager import (
    TransactionManager as AIOKafkaTransactionManager,
)
from aiokafka.protocol.api import Request as ProtocolRequest
from aiokafka.protocol.api import RequestStruct
from aiokafka.protocol.transaction import InitProducerIdRequest
from faust.stores.memory import Store as MemoryStore
from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables.base import Collection as FaustCollection
from faust.tables.manager import TableManager as FaustTableManager
from faust.tables.recovery import Recovery
from faust.transport import consumer as faust_consumer
from faust.transport.conductor import Conductor
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.services import ServiceTask
from mode.timers import Timer as ModeTimer

from sessionflow import metadata_backoff
from sessionflow.library_shape import source_says
from streams.runtime.consumer import MODE_TIMERS_LOGGER, OVERLAP_MESSAGE
from streams.runtime.stable_ends import STABLE_WAIT_MARGIN_S
from streams.runtime.transport import Producer as RuntimeProducer


@dataclass(frozen=True)
class Requirement:
    what: str
    why: str
    holds: Callable[[Any], bool]  # given the live app


def _method(owner: type[Any], name: str, *params: str) -> bool:
    """`owner` itself implements `name` (a base class's stub does not count), taking (at least)
    `params`."""
    fn = vars(owner).get(name)
    if not callable(fn):
        return False
    names = inspect.signature(fn).parameters
    return all(p in names for p in params)


def _live(app: Any, get: Callable[[Any], Any]) -> bool:
    """`get(app)` finds what it looks for on the live objects."""
    try:
        return get(app) is not None
    except (AttributeError, KeyError, TypeError):
        return False


_CONSUMER = faust_consumer.Consumer
_THREAD = faust_aiokafka.AIOKafkaConsumerThread

REQUIREMENTS: Final = (
    Requirement(
        "faust App._new_transport(self), used by App.transport",
        "streams/runtime/app.py builds the worker's transport (our consumer, our transaction"
        " manager) there",
        lambda app: (
            _method(faust.App, "_new_transport")
            and source_says(
                getattr(inspect.getattr_static(faust.App, "transport", None), "fget", None),
                "_new_transport",
            )
        ),
    ),
    Requirement(
        "faust aiokafka Transport.Consumer, Transport.TransactionManager and"
        " Consumer._new_consumer_thread(self)",
        "where the runtime's consumer, transaction manager and consumer thread plug in",
        lambda app: (
            isinstance(vars(faust_aiokafka.Transport).get("Consumer"), type)
            and isinstance(
                inspect.getattr_static(faust_aiokafka.Transport, "TransactionManager"), type
            )
            and _method(faust_aiokafka.Consumer, "_new_consumer_thread")
        ),
    ),
    Requirement(
        "faust aiokafka Transport.Producer and Producer._new_producer(self, transactional_id),"
        " called by Producer.on_start; the app's producer made by the transport's",
        "Faust's own producer (the expiry ticks) waits after a failed metadata update, so its"
        " sender does not spin while the broker is down (transport.py,"
        " sessionflow/metadata_backoff.py)",
        lambda app: (
            isinstance(vars(faust_aiokafka.Transport).get("Producer"), type)
            and _method(faust_aiokafka.Producer, "_new_producer", "transactional_id")
            and source_says(faust_aiokafka.Producer.on_start, "self._new_producer()")
            and isinstance(app.producer, RuntimeProducer)
        ),
    ),
    Requirement(
        "faust Consumer._drain_messages(self, fetcher), run by Fetcher._fetcher",
        "the runtime's drain loop hands fetched batches to the runner (consumer.py, 1 and 2)",
        lambda app: (
            _method(_CONSUMER, "_drain_messages", "fetcher")
            and source_says(faust_consumer.Fetcher, "async def _fetcher", "_drain_messages(self)")
        ),
    ),
    Requirement(
        "faust Consumer flow control (flow_active, can_resume_flow, stop_flow) and"
        " _get_active_partitions",
        "the drain loop fetches only while the flow runs, and only the active partitions",
        lambda app: (
            _method(_CONSUMER, "stop_flow")
            and _method(_CONSUMER, "_get_active_partitions")
            and _live(app, lambda a: a.consumer.can_resume_flow)
            and isinstance(getattr(app.consumer, "flow_active", None), bool)
        ),
    ),
    Requirement(
        "faust app setting TableManager, TableManager.recovery (a property building Recovery"
        " into _recovery)",
        "the worker's table manager builds the runtime's recovery service (restore.py)",
        lambda app: (
            isinstance(inspect.getattr_static(FaustTableManager, "recovery"), property)
            and source_says(
                inspect.getattr_static(FaustTableManager, "recovery").fget,
                "self._recovery",
                "Recovery(",
            )
            and _live(app, lambda a: a.conf.TableManager)
            and type(app.tables.recovery).__name__ == "Restorer"
        ),
    ),
    Requirement(
        "faust app setting Table, Collection._new_store_by_url(self, url) (used by _new_store);"
        " RocksDB Store(url, app, table, options=...) with options, use_rocksdict and"
        " rocksdb_options (opened by _open_for_partition); rocksdict Cache, WriteBufferManager"
        " .new_write_buffer_manager_with_cache, Options.set_write_buffer_manager,"
        " BlockBasedOptions.set_cache_index_and_filter_blocks",
        "every RocksDB partition opens under the app's one memory budget (store.py)",
        lambda app: (
            _method(FaustCollection, "_new_store_by_url", "url")
            and source_says(FaustCollection._new_store, "_new_store_by_url(")
            and source_says(RocksDBStore.__init__, "self.options", "self.rocksdb_options =")
            and source_says(RocksDBStore._open_for_partition, "self.rocksdb_options.open(")
            and callable(
                getattr(rocksdict.WriteBufferManager, "new_write_buffer_manager_with_cache", None)
            )
            and callable(getattr(rocksdict.Options, "set_write_buffer_manager", None))
            and callable(
                getattr(rocksdict.BlockBasedOptions, "set_cache_index_and_filter_blocks", None)
            )
            and app.conf.Table.__module__ == "streams.runtime.store"
        ),
    ),
    Requirement(
        "faust Recovery: active_tps, standby_tps, active_offsets, standby_offsets, tp_to_table,"
        " in_recovery, need_recovery(self), standby_remaining_total(self),"
        " _set_recovery_started(self), _set_recovery_ended(self), signal_recovery_end (awaited"
        " by _restart_recovery), the _slurp_changelogs task; tables.standbys_ready and"
        " on_standbys_ready(self)",
        "changelog records are applied by the runtime and recovery's bookkeeping moved as"
        " Faust's own loop moves it (restore.py)",
        lambda app: (
            _method(Recovery, "need_recovery")
            and _method(Recovery, "standby_remaining_total")
            and _method(Recovery, "_set_recovery_started")
            and _method(Recovery, "_set_recovery_ended")
            and source_says(
                getattr(vars(Recovery).get("_restart_recovery"), "fun", None),
                "_set_recovery_started()",
                "signal_recovery_end.wait()",
            )
            and isinstance(vars(Recovery).get("_slurp_changelogs"), ServiceTask)
            and _method(FaustTableManager, "on_standbys_ready")
            and _live(
                app,
                lambda a: (
                    a.tables.recovery.active_tps,
                    a.tables.recovery.standby_tps,
                    a.tables.recovery.active_offsets,
                    a.tables.recovery.standby_offsets,
                    a.tables.recovery.tp_to_table,
                    a.tables.recovery.signal_recovery_end.set,
                ),
            )
            and isinstance(app.tables.recovery.in_recovery, bool)
            and isinstance(app.tables.standbys_ready, bool)
        ),
    ),
    Requirement(
        "faust Consumer.perform_seek(self), called by Recovery.on_recovery_completed before"
        " app.flow_control.resume()",
        "the seek at the end of recovery loses records unless the runtime stops the flow and"
        " seeks partitions without a committed offset (consumer.py, 3)",
        lambda app: (
            _method(_CONSUMER, "perform_seek")
            and source_says(
                Recovery.on_recovery_completed, "perform_seek()", "flow_control.resume()"
            )
        ),
    ),
    Requirement(
        "the live consumer's _committed_offset mapping, _is_changelog_tp(self, tp),"
        " ThreadDelegateConsumer.assignment(self), ensure_aiokafka_TPset",
        "which partitions have no committed offset after the seek",
        lambda app: (
            _live(app, lambda a: a.consumer._committed_offset.get)
            and _method(_CONSUMER, "_is_changelog_tp", "tp")
            and _method(faust_consumer.ThreadDelegateConsumer, "assignment")
            and callable(getattr(faust_aiokafka, "ensure_aiokafka_TPset", None))
        ),
    ),
    Requirement(
        "faust AIOKafkaConsumerThread call_thread, seek_wait(self, partitions),"
        " seek_to_beginning(self, *partitions), position(self, tp), _highwaters(self, partitions)"
        " (used by highwaters) and verify_event_path(self, now, tp)",
        "fetch on the consumer's thread, move partitions back or to their beginning, read"
        " changelog ends from the broker (consumer.py, 4), no livelock warnings (6)",
        lambda app: (
            callable(getattr(_THREAD, "call_thread", None))
            and _method(_THREAD, "seek_wait", "partitions")
            and _method(_THREAD, "seek_to_beginning", "partitions")
            and _method(_THREAD, "position", "tp")
            and _method(_THREAD, "_highwaters", "partitions")
            and source_says(_THREAD.highwaters, "self._highwaters")
            and _method(_THREAD, "verify_event_path", "now", "tp")
        ),
    ),
    Requirement(
        "aiokafka consumer _fetcher (Fetcher.fetched_records(self, partitions, timeout,"
        " max_records), _closed), _subscriptions.fetch_context(), subscription.assignment"
        " .state_value(tp) with has_valid_position and position",
        "the runtime fetches a copy of the active partitions and reads each one's position"
        " after the fetch (consumer.py, 2; runner.py)",
        lambda app: (
            _method(AIOKafkaFetcher, "fetched_records", "partitions", "timeout", "max_records")
            and _method(SubscriptionState, "fetch_context")
            and isinstance(
                inspect.getattr_static(TopicPartitionState, "has_valid_position"), property
            )
            and isinstance(inspect.getattr_static(TopicPartitionState, "position"), property)
        ),
    ),
    Requirement(
        "faust Consumer.commit(self, topics, start_new_transaction) (run by its commit timer"
        " and at stop), on_partitions_revoked(self, revoked), _commit(self, offsets)",
        "commits are the runner's, between units; a revocation commits first; at-least-once"
        " offsets are committed by the consumer (consumer.py, 5)",
        lambda app: (
            _method(_CONSUMER, "commit", "topics", "start_new_transaction")
            and source_says(_CONSUMER.commit_and_end_transactions, "self.commit(")
            and _method(_CONSUMER, "on_partitions_revoked", "revoked")
            and _method(faust_consumer.ThreadDelegateConsumer, "_commit", "offsets")
        ),
    ),
    Requirement(
        "faust TransactionManager.on_rebalance(self, assigned, revoked, newly_assigned) and"
        " on_partitions_revoked(self, revoked), called by App._on_partitions_assigned/_revoked",
        "the runtime's producers replace Faust's transactional producers (transport.py)",
        lambda app: (
            _method(
                faust_consumer.TransactionManager,
                "on_rebalance",
                "assigned",
                "revoked",
                "newly_assigned",
            )
            and _method(faust_consumer.TransactionManager, "on_partitions_revoked", "revoked")
            and source_says(faust.App._on_partitions_assigned, "transactions.on_rebalance")
        ),
    ),
    Requirement(
        "faust TransactionManager.transactional_id_format"
        " '{group_id}-{tpg.group}-{tpg.partition}' and assignor.group_for_topic(topic)",
        "the runtime's transactional ids are the ones Faust used: an upgraded worker fences an"
        " older one that still runs (app.py)",
        lambda app: (
            faust_consumer.TransactionManager.transactional_id_format
            == "{group_id}-{tpg.group}-{tpg.partition}"
            and _live(app, lambda a: a.assignor.group_for_topic)
        ),
    ),
    Requirement(
        "faust AIOKafkaConsumerThread._create_client_consumer(self, transport) (no isolation, the"
        " app's broker settings), on_thread_stop(self) and transport; Recovery._restart_recovery"
        " building the active partitions' highwaters within conf.broker_request_timeout",
        "exactly-once: a table partition is restored only past the transactions still open on its"
        " changelog, waiting within the time Faust gives that lookup (consumer.py, 11)",
        lambda app: (
            _method(_THREAD, "_create_client_consumer", "transport")
            and _method(_THREAD, "on_thread_stop")
            and source_says(
                getattr(vars(Recovery).get("_restart_recovery"), "fun", None),
                "consumer, assigned_active_tps, active_highwaters",
                "timeout=self.app.conf.broker_request_timeout",
            )
            and _live(app, lambda a: a.consumer._thread.transport)
            and app.conf.broker_request_timeout > 2 * STABLE_WAIT_MARGIN_S
        ),
    ),
    Requirement(
        "aiokafka AIOKafkaConsumer._client (an AIOKafkaClient) with send(self, node_id, request),"
        " coordinator_lookup(self, coordinator_type, coordinator_key) and cluster"
        " (leader_for_partition, brokers); InitProducerIdRequest(transactional_id,"
        " transaction_timeout_ms); Request.prepare(self, versions) over the broker's versions,"
        " the versions a Request may send read from its generic argument (__orig_bases__);"
        " RequestStruct.FLEXIBLE_VERSION",
        "one transaction per worker: requests aiokafka does not have are declared on its"
        " protocol types (protocol.py), and the restore fences a lost worker's transactional id"
        " with them (fencing.py; consumer.py, 12)",
        lambda app: (
            not app.transaction_per_worker
            or (
                source_says(AIOKafkaConsumer.__init__, "self._client = AIOKafkaClient(")
                and _method(AIOKafkaClient, "send", "node_id", "request")
                and _method(AIOKafkaClient, "coordinator_lookup", "coordinator_type")
                and _method(ClusterMetadata, "leader_for_partition", "partition")
                and _method(ClusterMetadata, "brokers")
                and _method(InitProducerIdRequest, "__init__", "transactional_id")
                and _method(ProtocolRequest, "prepare", "versions")
                and source_says(ProtocolRequest.__init_subclass__, "__orig_bases__", "_CLASSES")
                and source_says(
                    RequestStruct.build_request_header, "FLEXIBLE_VERSION", "RequestHeader_v2"
                )
            )
        ),
    ),
    Requirement(
        "faust AIOKafkaConsumerThread._create_worker_consumer(self, transport); aiokafka"
        " AIOKafkaConsumer._fetch_max_wait_ms, handed by start() to its Fetcher",
        "the worker's fetches wait fetch_max_wait_ms at the broker, not Faust's fixed 1.5 s,"
        " which held raw records back for a second at a time (consumer.py, 8)",
        lambda app: (
            _method(_THREAD, "_create_worker_consumer", "transport")
            and source_says(AIOKafkaConsumer.start, "fetch_max_wait_ms=self._fetch_max_wait_ms")
            and source_says(
                AIOKafkaConsumer.__init__, "self._fetch_max_wait_ms = fetch_max_wait_ms"
            )
        ),
    ),
    Requirement(
        "aiokafka AIOKafkaClient._metadata_update(self, cluster_metadata, topics) returning"
        " whether it updated, awaited by _md_synchronizer; _retry_backoff; the consumer's and"
        " the producer's client",
        "a failed metadata update waits the retry backoff, so neither the fetcher nor a producer's"
        " sender spins a core while the broker is down and a partition has no leader"
        " (sessionflow/metadata_backoff.py)",
        lambda app: metadata_backoff.fits(),
    ),
    Requirement(
        "faust Conductor.add(self, topic)",
        "the source topics are subscribed like an agent's (app.py)",
        lambda app: _method(Conductor, "add", "topic"),
    ),
    Requirement(
        "faust RocksDB Store._db_for_partition(self, partition) and offset_key; memory Store"
        " .data; rocksdict WriteBatch(raw_mode=True)",
        "units read and write the table's store a partition at a time, in write batches (table.py)",
        lambda app: (
            _method(RocksDBStore, "_db_for_partition", "partition")
            and isinstance(getattr(RocksDBStore, "offset_key", None), bytes)
            and source_says(MemoryStore.__post_init__, "self.data")
            and callable(getattr(rocksdict, "WriteBatch", None))
        ),
    ),
    Requirement(
        "aiokafka AIOKafkaProducer create_batch(self), send_batch(self, batch, topic, partition),"
        " send_offsets_to_transaction(self, offsets, group_id), begin_transaction,"
        " commit_transaction; BatchBuilder.append(timestamp, key, value, headers), record_count",
        "units send record batches, and commits send offsets into the partitions' transactions"
        " (producers.py)",
        lambda app: (
            _method(AIOKafkaProducer, "create_batch")
            and _method(AIOKafkaProducer, "send_batch", "batch", "topic", "partition")
            and _method(AIOKafkaProducer, "send_offsets_to_transaction", "offsets", "group_id")
            and _method(AIOKafkaProducer, "begin_transaction")
            and _method(AIOKafkaProducer, "commit_transaction")
            and _method(BatchBuilder, "append", "timestamp", "key", "value", "headers")
            and _method(BatchBuilder, "record_count")
        ),
    ),
    Requirement(
        "aiokafka AIOKafkaClient.coordinator_lookup(self, coordinator_type, coordinator_key) of"
        " the producer's own client, called by Sender._find_coordinator, which tries"
        " NodeNotReadyError again after a metadata update; the client's cluster.brokers()",
        "coordinator lookups after failures are paced, and one that loses its connection, or"
        " finds no broker known, is tried again instead of stopping the producer's sender"
        " (lookups.py, aiokafka #1151)",
        lambda app: (
            _method(AIOKafkaClient, "coordinator_lookup", "coordinator_type", "coordinator_key")
            and source_says(AIOKafkaClient.__init__, "self.cluster = ClusterMetadata(")
            and _method(ClusterMetadata, "brokers")
            and source_says(
                AIOKafkaProducer.__init__,
                "self.client = AIOKafkaClient(",
                "self._sender = Sender(",
                "self.client,",
            )
            and source_says(
                AIOKafkaSender._find_coordinator,
                "await self.client.coordinator_lookup(",
                "Errors.NodeNotReadyError",
                "await self.client.force_metadata_update()",
                "continue",
            )
        ),
    ),
    Requirement(
        "aiokafka AIOKafkaProducer._txn_manager; TransactionManager consumer_group_to_add(self),"
        " asked by Sender._maybe_do_transactional_request after partitions_to_add(),"
        " _txn_consumer_group, txn_partitions, is_in_transaction(self)",
        "a transaction takes the group's offsets partition once it holds data, not at the"
        " commit: one round trip less for every commit (producers.py, add_offsets_early)",
        lambda app: (
            source_says(AIOKafkaProducer.__init__, "self._txn_manager = TransactionManager(")
            and _method(AIOKafkaTransactionManager, "consumer_group_to_add")
            and _method(AIOKafkaTransactionManager, "is_in_transaction")
            and isinstance(vars(AIOKafkaTransactionManager).get("txn_partitions"), property)
            and source_says(AIOKafkaTransactionManager.__init__, "self._txn_consumer_group = None")
            and source_says(
                AIOKafkaSender._maybe_do_transactional_request,
                "txn_manager.partitions_to_add()",
                "txn_manager.consumer_group_to_add()",
                "self._do_add_offsets_to_txn(group_id)",
            )
        ),
    ),
    Requirement(
        "aiokafka Sender._do_txn_offset_commit(self, offsets, group_id), called by"
        " _maybe_do_transactional_request; TxnOffsetCommitHandler(sender, offsets, group_id) with"
        " create_request(self), handle_response(self, resp) reading resp.errors, _offsets,"
        " _group_id; AIOKafkaProducer(transaction_timeout_ms=)",
        "one transaction per worker: its offsets are committed with the group's generation"
        " (worker_txn.py, commit_with_generation)",
        lambda app: (
            not app.transaction_per_worker
            or (
                _method(AIOKafkaSender, "_do_txn_offset_commit", "offsets", "group_id")
                and source_says(
                    AIOKafkaSender._maybe_do_transactional_request, "self._do_txn_offset_commit("
                )
                and _method(TxnOffsetCommitHandler, "__init__", "sender", "offsets", "group_id")
                and _method(TxnOffsetCommitHandler, "create_request")
                and source_says(
                    TxnOffsetCommitHandler.handle_response,
                    "resp.errors",
                    "txn_manager.offset_committed(",
                )
                and source_says(TxnOffsetCommitHandler.__init__, "self._offsets", "self._group_id")
                and _method(AIOKafkaProducer, "__init__", "transaction_timeout_ms")
            )
        ),
    ),
    Requirement(
        "aiokafka Sender._sender_routine re-raising ProducerFenced as it is, Sender.sender_task"
        " (a property), and _fail_all, the sender task's done-callback, handing the sender's"
        " error to TransactionManager.fatal_error(exc), which fails the pending offsets with it,"
        " and its"
        " wait_for_transaction_end(self), and to MessageAccumulator.fail_all(exception), which"
        " fails the drain waiter of every batch in _batches and _pending_batches"
        " (MessageBatch.failure); GroupCoordinator.request_rejoin(self); faust"
        " ConsumerThread.call_thread(self, method)",
        "exactly-once: a fenced transaction, or a sender stopped on another error, reaches the"
        " runner as ProducerFenced or SenderStopped (producers.py, fenced_as_such), which drops"
        " the uncommitted work and rejoins in place (runner.py, app.py); another error type would"
        " stop the worker instead",
        lambda app: (
            not app.in_transaction
            or (
                source_says(AIOKafkaSender._sender_routine, "ProducerFenced,", "raise")
                and isinstance(
                    inspect.getattr_static(AIOKafkaSender, "sender_task", None), property
                )
                and source_says(AIOKafkaSender._fail_all, "fatal_error(task_exception)")
                and source_says(AIOKafkaSender.start, "add_done_callback(self._fail_all)")
                and source_says(
                    AIOKafkaTransactionManager.fatal_error,
                    "for _, _, fut in self._pending_txn_offsets",
                    "fut.set_exception(exc)",
                )
                and _method(AIOKafkaTransactionManager, "wait_for_transaction_end")
                and source_says(
                    MessageAccumulator.fail_all, "self._batches.values()", "self._pending_batches"
                )
                and source_says(MessageBatch.failure, "self._drain_waiter.set_exception(exception)")
                and source_says(SendProduceReqHandler.do, "_message_accumulator.reenqueue(batch)")
                and source_says(MessageAccumulator.reenqueue, "self._pending_batches.remove(batch)")
                and _method(GroupCoordinator, "request_rejoin")
                and callable(getattr(_THREAD, "call_thread", None))
            )
        ),
    ),
    Requirement(
        "aiokafka SendProduceReqHandler.do handing a retried batch back with"
        " self._sender._message_accumulator.reenqueue(batch) after the backoff, and"
        " MessageAccumulator.reenqueue(self, batch) removing it from _pending_batches, which a"
        " failed batch has left",
        "every worker producer ends the retry of a batch its stopped sender failed during the"
        " backoff (producers.py, skip_settled_retries); aiokafka's KeyError there is logged at"
        " ERROR as a task exception never retrieved",
        lambda app: (
            source_says(SendProduceReqHandler.do, "_message_accumulator.reenqueue(batch)")
            and _method(MessageAccumulator, "reenqueue", "batch")
            and source_says(MessageAccumulator.reenqueue, "self._pending_batches.remove(batch)")
        ),
    ),
    Requirement(
        "aiokafka GroupCoordinator._do_fetch_commit_offsets(self, partitions), called by"
        " fetch_committed_offsets, which tries retriable errors again; _send_req(self, request),"
        " coordinator_dead(self), group_id, generation, member_id; AIOKafkaConsumer.start"
        " making _coordinator; faust AIOKafkaConsumerThread.on_start starting _consumer",
        "one transaction per worker: a new owner reads only stable offsets, and commits name the"
        " member's generation (worker_txn.py, fetch_stable_offsets; app.py, group_member)",
        lambda app: (
            not app.transaction_per_worker
            or (
                _method(GroupCoordinator, "_do_fetch_commit_offsets", "partitions")
                and source_says(
                    GroupCoordinator.fetch_committed_offsets,
                    "self._do_fetch_commit_offsets(",
                    "err.retriable",
                )
                and _method(GroupCoordinator, "_send_req", "request")
                and _method(GroupCoordinator, "coordinator_dead")
                and all(
                    source_says(GroupCoordinator.__init__, f"self.{name} = ")
                    for name in ("group_id", "generation", "member_id")
                )
                and source_says(AIOKafkaConsumer.start, "self._coordinator = GroupCoordinator(")
                and source_says(
                    faust_aiokafka.AIOKafkaConsumerThread.on_start,
                    "self._consumer = self._create_consumer(",
                    "await self._consumer.start()",
                )
            )
        ),
    ),
    Requirement(
        "mode Timer.tick's warning 'Timer %s is overlapping (interval=%r runtime=%r)' on the"
        " 'mode.timers' logger; faust Consumer._commit_handler's timer named 'commit'",
        "a commit longer than the interval is a DEBUG record, not a fault (consumer.py, 10)",
        lambda app: (
            source_says(ModeTimer.tick, "logger.warning(", f'"{OVERLAP_MESSAGE}"')
            and ModeTimer.__module__ == MODE_TIMERS_LOGGER
            and isinstance(vars(faust_consumer.Consumer).get("_commit_handler"), ServiceTask)
            and source_says(vars(faust_consumer.Consumer)["_commit_handler"].fun, 'name="commit"')
        ),
    ),
    Requirement(
        "the live app.tables.recovery.completed event",
        "the worker is ready only after its first restore (/readyz)",
        lambda app: _live(app, lambda a: a.tables.recovery.completed.is_set),
    ),
)
