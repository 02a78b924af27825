"""JSON-lines logging, formatted and written off the event loop by a listener thread."""

from __future__ import annotations

import logging
import queue
import sys
from logging.handlers import QueueHandler, QueueListener

import orjson

from producer.records import rfc3339_ms


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": rfc3339_ms(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class _DeferredQueueHandler(QueueHandler):
    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The stock handler formats here, on the event loop; the listener thread does it instead.
        return record


def configure_logging(level: str) -> QueueListener:
    """Route every logger to stderr as JSON lines; the caller stops the returned listener."""
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(JsonFormatter())
    listener = QueueListener(records, stream, respect_handler_level=False)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_DeferredQueueHandler(records))
    root.setLevel(level)
    listener.start()
    return listener
