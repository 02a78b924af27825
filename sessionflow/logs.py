"""One log format for every process: JSON lines or text, the same fields, quiet under faults.

Every record, ours and the libraries' (Faust, mode, aiokafka, librdkafka, uvicorn), goes through
one root handler: `ts`, `level`, `logger`, `msg`, then the record's context (`extra={"fields":
{...}}`: `session_id`, `message_id`, `partition`, ...). A secret, a signature or a phone number
that a message might carry is masked on the way out, whatever logged it.

A fault repeats itself: a broker outage makes every client log the same error per reconnect
attempt. The first WARNING-or-worse of a kind (its logger and message template) is written; the
same kind again is counted, not written, while it lasts; a summary line says every
`summary_s` what was held back; one line says when a kind has been silent for `quiet_s` (the
fault ended). The decisions are `FaultGate`'s, a pure class; a thread drives its clock.
"""

from __future__ import annotations

import logging
import queue
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from logging.handlers import QueueHandler
from typing import Any, Final, Literal, TypeAlias

import orjson

from sessionflow.redaction import mask_phone_number

LogFormat: TypeAlias = Literal["json", "text"]
FAULTS_LOGGER: Final = "sessionflow.faults"
SUMMARY_S: Final = 10.0
QUIET_S: Final = 10.0
_TICK_S: Final = 1.0
# Library warnings that are advice about the configuration, not faults: the first is written, its
# repeats dropped and never summed up as "still failing". aiokafka gives this one at every
# connection with SASL PLAIN over plaintext (SESSIONFLOW_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT).
ADVISORIES: Final = frozenset({("aiokafka.conn", "Sending username and password in the clear")})

# What must never reach a log, whatever logged it: webhook secrets, signature values, phone
# numbers (E.164). One pattern, so a line is scanned once.
_SECRETS: Final = re.compile(
    r"(?P<secret>whsec_[A-Za-z0-9+/=_-]*)"
    r"|(?P<signature>v1,[A-Za-z0-9+/]{20,}={0,2})"
    r"|(?P<phone>(?<![\w+])\+[1-9]\d{7,14}\b)"
)


def _mask(match: re.Match[str]) -> str:
    if match.lastgroup == "secret":
        return "[secret]"
    if match.lastgroup == "signature":
        return "v1,[signature]"
    return str(mask_phone_number(match.group()))


def scrub(text: str) -> str:
    """`text` with every secret, signature value and phone number masked."""
    # Each kind starts with its own literal. Most lines hold none of them, and these checks cost
    # well under a microsecond where the scan costs ~12 (a webhook's line at INFO).
    if "whsec_" not in text and "v1," not in text and "+" not in text:
        return text
    return _SECRETS.sub(_mask, text)


def timestamp(created: float) -> str:
    """RFC 3339 UTC with milliseconds, as every record's `ts`."""
    return (
        datetime.fromtimestamp(created, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def record_fields(record: logging.LogRecord) -> dict[str, object]:
    """The fields of one line, in order: ts, level, logger, msg, then the record's context."""
    doc: dict[str, object] = {
        "ts": timestamp(record.created),
        "level": record.levelname,
        "logger": record.name,
        "msg": record.getMessage(),
    }
    fields = getattr(record, "fields", None)
    if isinstance(fields, dict):
        doc.update(fields)
    return doc


class Formatter(logging.Formatter):
    """JSON lines (`json`) or `ts level logger: msg key=value ...` (`text`), the same fields."""

    def __init__(self, fmt: LogFormat = "json") -> None:
        super().__init__()
        self.fmt = fmt

    def format(self, record: logging.LogRecord) -> str:
        doc = record_fields(record)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        if self.fmt == "json":
            line = orjson.dumps(doc, default=str).decode()
        else:
            head = f"{doc.pop('ts')} {doc.pop('level'):<8} {doc.pop('logger')}: {doc.pop('msg')}"
            exc = doc.pop("exc", None)
            line = " ".join([head, *(f"{k}={v}" for k, v in doc.items())])
            if exc is not None:
                line = f"{line}\n{exc}"
        return scrub(line)


@dataclass(slots=True)
class _Fault:
    logger: str
    first_s: float
    last_s: float
    last_msg: str
    held: int = 0  # since the last summary
    total: int = 1


@dataclass(frozen=True, slots=True)
class Notice:
    """A line the gate wants written: a summary of held-back records, or a fault's end."""

    level: int
    msg: str
    fields: dict[str, object]


class FaultGate:
    """Which WARNING-or-worse records to write: the first of a kind, not its repeats."""

    def __init__(self, *, summary_s: float = SUMMARY_S, quiet_s: float = QUIET_S) -> None:
        self.summary_s, self.quiet_s = summary_s, quiet_s
        self._faults: dict[tuple[str, str], _Fault] = {}
        self._advised: set[tuple[str, str]] = set()
        self._last_summary_s: float | None = None
        self._lock = threading.Lock()

    def admit(self, logger: str, template: str, message: str, now: float) -> bool:
        """True: write this record (the first of its kind); False: counted instead."""
        key = (logger, template)
        with self._lock:
            if key in ADVISORIES:
                first = key not in self._advised
                self._advised.add(key)
                return first
            fault = self._faults.get(key)
            if fault is None:
                self._faults[key] = _Fault(logger, now, now, message)
                if self._last_summary_s is None:
                    self._last_summary_s = now
                return True
            fault.last_s, fault.last_msg = now, message
            fault.held += 1
            fault.total += 1
            return False

    def tick(self, now: float) -> list[Notice]:
        """What to write at `now`: a summary while records are held back, each fault's end."""
        notices: list[Notice] = []
        with self._lock:
            if self._last_summary_s is not None and now - self._last_summary_s >= self.summary_s:
                held = [f for f in self._faults.values() if f.held]
                if held:
                    last = max(held, key=lambda f: f.last_s)
                    notices.append(
                        Notice(
                            logging.WARNING,
                            f"still failing: {sum(f.held for f in held)} repeated messages "
                            f"held back in {now - self._last_summary_s:.0f}s; last: {last.last_msg}",
                            {"held_back": sum(f.held for f in held), "kinds": len(held)},
                        )
                    )
                    for f in held:
                        f.held = 0
                self._last_summary_s = now if self._faults else None
            for key, f in list(self._faults.items()):
                if now - f.last_s >= self.quiet_s:
                    del self._faults[key]
                    if f.total > 1:
                        notices.append(
                            Notice(
                                logging.INFO,
                                f"ended after {f.last_s - f.first_s:.0f}s, "
                                f"{f.total} times in all: {f.last_msg}",
                                {"source": f.logger, "count": f.total},
                            )
                        )
            if not self._faults:
                self._last_summary_s = None
        return notices


class _GateFilter(logging.Filter):
    def __init__(self, gate: FaultGate, clock: Callable[[], float]) -> None:
        super().__init__()
        self.gate, self.clock = gate, clock

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or record.name == FAULTS_LOGGER:
            return True
        return self.gate.admit(record.name, str(record.msg), record.getMessage(), self.clock())


class _DeferredQueueHandler(QueueHandler):
    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The stock handler formats here, in the caller (the event loop); the listener thread does.
        return record


class Writer:
    """Formats queued records and writes them to a stream, on a thread of its own: everything
    queued since its last wake-up in one write (a line per record; a busy producer logs a line
    per webhook, and a write and a thread hand-over per line cost more than the line)."""

    _STOP: Final = object()

    def __init__(
        self, records: queue.SimpleQueue[logging.LogRecord], target: logging.StreamHandler[Any]
    ) -> None:
        self._records, self._target = records, target
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Write what is queued, then end the thread."""
        self._records.put(self._STOP)  # type: ignore[arg-type]  # the one sentinel
        self._thread.join()

    def _run(self) -> None:
        records = self._records
        while True:
            batch = [records.get()]
            while True:
                try:
                    batch.append(records.get_nowait())
                except queue.Empty:
                    break
            lines, stopping = [], False
            for record in batch:
                if record is self._STOP:
                    stopping = True
                    continue
                try:
                    lines.append(self._target.format(record))
                except Exception:  # as logging does: a record that cannot be formatted says so
                    self._target.handleError(record)
            if lines:
                self._write("\n".join(lines) + self._target.terminator)
            if stopping:
                return

    def _write(self, text: str) -> None:
        try:
            self._target.stream.write(text)
            self._target.flush()
        except Exception:  # a closed or broken stream: nowhere left to say it
            return


class Logging:
    """The process's logging, set up by `configure`: stop it last (it flushes what is queued)."""

    def __init__(self, handler: logging.Handler, listener: Writer, gate: FaultGate) -> None:
        self.handler, self._listener, self.gate = handler, listener, gate
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="log-faults", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        faults = logging.getLogger(FAULTS_LOGGER)
        while not self._stop.wait(_TICK_S):
            for notice in self.gate.tick(time.monotonic()):
                faults.log(notice.level, notice.msg, extra={"fields": notice.fields})

    def stop(self) -> None:
        self._stop.set()
        self._ticker.join(timeout=2 * _TICK_S)
        self._listener.stop()


def handler(
    fmt: LogFormat, *, summary_s: float = SUMMARY_S, quiet_s: float = QUIET_S
) -> tuple[logging.Handler, Writer, FaultGate]:
    """The root handler (records are queued, formatted and written to stderr by a thread)."""
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(Formatter(fmt))
    listener = Writer(records, stream)
    gate = FaultGate(summary_s=summary_s, quiet_s=quiet_s)
    queued = _DeferredQueueHandler(records)
    queued.addFilter(_GateFilter(gate, time.monotonic))
    return queued, listener, gate


def configure_logging(level: str, fmt: LogFormat = "json", *, install: bool = True) -> Logging:
    """Route every logger to stderr in `fmt`; with `install=False` the caller attaches
    `Logging.handler` itself (Faust's worker sets up the root logger on its own)."""
    root_handler, listener, gate = handler(fmt)
    # No line shows the caller's file and line, thread or process: not looking them up saves
    # a third of what a record costs the logging thread (the logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    if install:
        root = logging.getLogger()
        for old in list(root.handlers):
            root.removeHandler(old)
        root.addHandler(root_handler)
        root.setLevel(level)
    listener.start()
    return Logging(root_handler, listener, gate)
