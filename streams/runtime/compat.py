"""Every internal of faust-streaming and aiokafka that streams.runtime relies on, checked at start-up.

The runtime layer overrides library methods and reads a few private attributes. Were one renamed
in another version, the override would simply never be called, or the attribute read would fail
deep in a rebalance: the protection would silently disappear. So each is listed here with why it
is needed, and `check` verifies all of them against the installed libraries and the live app
before the worker starts; the worker refuses to run, naming the versions and what no longer fits.
The versions they were verified on are pinned in pyproject.toml (`VERIFIED` below).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

import faust
from faust.tables.recovery import Recovery
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types.tuples import Message

log = logging.getLogger(__name__)

VERIFIED: Final = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0", "mode-streaming": "0.7.1"}


class IncompatibleLibraries(RuntimeError):
    """An internal the runtime layer depends on is missing or changed shape."""


@dataclass(frozen=True)
class Requirement:
    what: str
    why: str
    holds: Callable[[Any], bool]  # given the live app


def _method(owner: type[Any], name: str, *params: str) -> Callable[[Any], bool]:
    """`owner` itself implements `name` (a base class's stub does not count), taking (at least)
    `params`."""

    def holds(_: Any) -> bool:
        fn = vars(owner).get(name)
        if not callable(fn):
            return False
        names = inspect.signature(fn).parameters
        return all(p in names for p in params)

    return holds


def _source_says(fn: Callable[..., Any] | None, *needles: str) -> Callable[[Any], bool]:
    """The source of `fn` contains `needles` in this order: it still calls what we hook."""

    def holds(_: Any) -> bool:
        if fn is None:
            return False
        try:
            source = inspect.getsource(fn)
        except (OSError, TypeError):
            return False
        at = 0
        for needle in needles:
            at = source.find(needle, at)
            if at < 0:
                return False
        return True

    return holds


def _live(get: Callable[[Any], Any]) -> Callable[[Any], bool]:
    """`get(app)` finds the attribute on the live objects."""

    def holds(app: Any) -> bool:
        try:
            get(app)
        except (AttributeError, KeyError, TypeError):
            return False
        return True

    return holds


REQUIREMENTS: Final = (
    Requirement(
        "faust App._new_transport(self), used by App.transport",
        "streams/runtime/app.py builds the worker's transport (and with it our consumer) there",
        lambda app: (
            _method(faust.App, "_new_transport")(app)
            and _source_says(
                getattr(inspect.getattr_static(faust.App, "transport", None), "fget", None),
                "_new_transport",
            )(app)
        ),
    ),
    Requirement(
        "faust aiokafka Transport.Consumer and Consumer._new_consumer_thread(self)",
        "the transport's consumer class and its thread: where our consumer and thread plug in",
        lambda app: (
            isinstance(inspect.getattr_static(faust_aiokafka.Transport, "Consumer"), type)
            and _method(faust_aiokafka.Consumer, "_new_consumer_thread")(app)
        ),
    ),
    Requirement(
        "faust Consumer.perform_seek(self), called by Recovery.on_recovery_completed before"
        " app.flow_control.resume()",
        "the seek at the end of recovery loses records unless our override stops the flow and"
        " seeks uncommitted partitions (streams/runtime/consumer.py, 1)",
        lambda app: (
            _method(faust_consumer.Consumer, "perform_seek")(app)
            and _source_says(
                Recovery.on_recovery_completed, "perform_seek()", "flow_control.resume()"
            )(app)
        ),
    ),
    Requirement(
        "faust Consumer.stop_flow(self), _is_changelog_tp(self, tp),"
        " ThreadDelegateConsumer.assignment(self)",
        "used by the recovery-seek override",
        lambda app: (
            _method(faust_consumer.Consumer, "stop_flow")(app)
            and _method(faust_consumer.Consumer, "_is_changelog_tp", "tp")(app)
            and _method(faust_consumer.ThreadDelegateConsumer, "assignment")(app)
        ),
    ),
    Requirement(
        "the live consumer's _committed_offset mapping and thread seek_to_beginning(*partitions);"
        " aiokafka driver ensure_aiokafka_TPset",
        "which partitions have no committed offset, and how to move them to their beginning",
        lambda app: (
            _live(lambda a: a.consumer._committed_offset.get)(app)
            and _method(faust_aiokafka.AIOKafkaConsumerThread, "seek_to_beginning", "partitions")(
                app
            )
            and callable(getattr(faust_aiokafka, "ensure_aiokafka_TPset", None))
        ),
    ),
    Requirement(
        "faust AIOKafkaConsumerThread._highwaters(self, partitions), used by highwaters()",
        "changelog ends must come from the broker, not the consumer's cache (consumer.py, 2)",
        lambda app: (
            _method(faust_aiokafka.AIOKafkaConsumerThread, "_highwaters", "partitions")(app)
            and _source_says(faust_aiokafka.AIOKafkaConsumerThread.highwaters, "self._highwaters")(
                app
            )
        ),
    ),
    Requirement(
        "faust Consumer.commit(self, topics, start_new_transaction) and"
        " on_partitions_revoked(self, revoked)",
        "commits at unit boundaries, and a commit at the start of every revocation (consumer.py,"
        " 3 and 4)",
        lambda app: (
            _method(faust_consumer.Consumer, "commit", "topics", "start_new_transaction")(app)
            and _method(faust_consumer.Consumer, "on_partitions_revoked", "revoked")(app)
        ),
    ),
    Requirement(
        "faust TransactionManager.transactional_id_format"
        " '{group_id}-{tpg.group}-{tpg.partition}' and assignor.group_for_topic(topic)",
        "outputs and changelog records are sent with the transactional id Faust commits the"
        " partition's offsets with (streams/runtime/transactions.py, 1)",
        lambda app: (
            faust_consumer.TransactionManager.transactional_id_format
            == "{group_id}-{tpg.group}-{tpg.partition}"
            and _live(lambda a: a.assignor.group_for_topic)(app)
        ),
    ),
    Requirement(
        "the live producer's _transaction_producers mapping and stop_transaction(self,"
        " transactional_id)",
        "every transactional producer is closed before partitions move (transactions.py, 2)",
        lambda app: (
            _live(lambda a: a.producer._transaction_producers.keys)(app)
            and _method(faust_aiokafka.Producer, "stop_transaction", "transactional_id")(app)
        ),
    ),
    Requirement(
        "faust Message slots generation_id and acked",
        "events of a revoked generation are refused without recording their offset"
        " (transactions.refuse)",
        lambda app: {"generation_id", "acked"} <= set(getattr(Message, "__slots__", ())),
    ),
    Requirement(
        "the live app.tables.recovery.completed event",
        "the worker is ready only after its first restore (/readyz)",
        _live(lambda a: a.tables.recovery.completed.is_set),
    ),
)


def installed_versions() -> dict[str, str]:
    found = {}
    for name in VERIFIED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def problems(app: Any) -> list[Requirement]:
    """The requirements that do not hold for the installed libraries and this app."""
    failed = []
    for requirement in REQUIREMENTS:
        try:
            held = requirement.holds(app)
        except Exception:  # a check that breaks is a requirement that does not hold
            log.debug("compat check raised: %s", requirement.what, exc_info=True)
            held = False
        if not held:
            failed.append(requirement)
    return failed


def check(app: Any) -> None:
    """Refuse to run on libraries the runtime layer no longer fits."""
    installed = installed_versions()
    versions = ", ".join(f"{n} {v}" for n, v in installed.items())
    failed = problems(app)
    if failed:
        lines = [f"- {r.what}: {r.why}" for r in failed]
        raise IncompatibleLibraries(
            f"the worker cannot run on {versions}: streams/runtime depends on internals that are"
            f" missing or changed shape (verified on"
            f" {', '.join(f'{n} {v}' for n, v in VERIFIED.items())}):\n" + "\n".join(lines)
        )
    if installed != VERIFIED:
        log.warning("streams.runtime was verified on %s; running on %s", VERIFIED, versions)
