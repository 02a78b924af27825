"""One log format: the same fields in JSON and text, nothing secret, repeated faults gated."""

from __future__ import annotations

import importlib
import inspect
import io
import logging
import queue
import sys

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessionflow.logs import (
    _SECRETS,
    ADVISORIES,
    FaultGate,
    Formatter,
    Writer,
    _mask,
    handler,
    scrub,
)


def record(
    msg: str,
    *args: object,
    level: int = logging.INFO,
    name: str = "producer",
    fields: dict[str, object] | None = None,
) -> logging.LogRecord:
    rec = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    rec.created = 1_700_000_000.123
    if fields is not None:
        rec.fields = fields
    return rec


def test_json_lines_carry_ts_level_logger_msg_then_the_context_in_order() -> None:
    line = Formatter("json").format(
        record("paired %s", "x", fields={"session_id": "s1", "message_id": "msg_1", "partition": 3})
    )
    doc = orjson.loads(line)
    assert list(doc) == ["ts", "level", "logger", "msg", "session_id", "message_id", "partition"]
    assert doc["ts"] == "2023-11-14T22:13:20.123Z"
    assert (doc["level"], doc["logger"], doc["msg"]) == ("INFO", "producer", "paired x")
    assert doc["partition"] == 3


def test_text_has_the_same_fields() -> None:
    line = Formatter("text").format(record("paired", fields={"session_id": "s1", "partition": 3}))
    assert line == "2023-11-14T22:13:20.123Z INFO     producer: paired session_id=s1 partition=3"


def test_an_exception_is_kept_in_both_formats() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        rec = logging.LogRecord("w", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "RuntimeError: boom" in orjson.loads(Formatter("json").format(rec))["exc"]
    assert "RuntimeError: boom" in Formatter("text").format(rec)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_secrets_signatures_and_phone_numbers_never_reach_a_line(fmt: str) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    rec = record(
        "verify with %s gave %s for %s",
        secret,
        signature,
        "+14155550123",
        fields={"phone": "+442071838750"},
    )
    line = Formatter(fmt).format(rec)  # type: ignore[arg-type]  # parametrized Literal
    for leaked in (secret, "MfKQ9r8GKYqrTwjUPD8IL", signature, "+14155550123", "+442071838750"):
        assert leaked not in line
    assert "[secret]" in line
    assert "v1,[signature]" in line


def test_scrub_leaves_ordinary_text_alone() -> None:
    text = "partition 12 offset 123456789 at 2025-03-14T09:26:53Z id 3f2b8c1e-9d4a-4e6b"
    assert scrub(text) == text


# Text made of the pieces secrets, signatures and phone numbers are made of, and their edges.
_PIECES = st.sampled_from(
    ["whsec_", "v1,", "+", "+1", "4155550123", "MfKQ9r8GKYqrTwjUPD8IL", "=", " ", ",", "a", "Z9/"]
)


@given(st.lists(_PIECES, max_size=12).map("".join))
def test_scrub_skips_only_text_the_full_scan_would_leave_alone(text: str) -> None:
    assert scrub(text) == _SECRETS.sub(_mask, text)


def test_the_first_fault_of_a_kind_is_written_its_repeats_counted() -> None:
    gate = FaultGate(summary_s=10, quiet_s=10)
    template = "Unable connect to node with id %s: %s"
    assert gate.admit("aiokafka", template, "node 1: refused", 0.0)
    assert not any(
        gate.admit("aiokafka", template, f"node 1: refused {i}", i / 10) for i in range(1, 100)
    )
    # Another kind (another template or logger) is its own first.
    assert gate.admit("aiokafka", "Got error produce response: %s", "x", 1.0)
    assert gate.admit("producer", template, "y", 1.0)


def test_an_advisory_is_written_once_and_never_reads_as_a_fault() -> None:
    gate = FaultGate(summary_s=10, quiet_s=5)
    ((logger, template),) = ADVISORIES
    assert gate.admit(logger, template, template, 0.0)
    assert not any(gate.admit(logger, template, template, i) for i in range(1, 60))
    assert gate.tick(10.0) == []  # no "still failing" summary
    assert gate.tick(60.0) == []  # and no end
    assert not gate.admit(logger, template, template, 61.0)  # once per process


def test_the_advisories_are_what_the_locked_libraries_log() -> None:
    for logger, template in ADVISORIES:
        module = importlib.import_module(logger)
        assert f'log.warning("{template}")' in inspect.getsource(module)


def test_a_summary_while_it_lasts_and_one_line_when_it_ends() -> None:
    gate = FaultGate(summary_s=10, quiet_s=5)
    gate.admit("aiokafka", "refused %s", "refused 1", 0.0)
    for i in range(1, 60):
        gate.admit("aiokafka", "refused %s", f"refused {i}", i * 0.25)
    assert gate.tick(5.0) == []
    (summary,) = gate.tick(10.0)
    assert summary.level == logging.WARNING
    assert summary.fields == {"held_back": 59, "kinds": 1}
    assert "refused 59" in summary.msg
    assert gate.tick(14.0) == []  # nothing new held back, not yet quiet for 5 s
    (ended,) = gate.tick(20.0)
    assert ended.level == logging.INFO
    assert ended.fields == {"source": "aiokafka", "count": 60}
    assert gate.tick(40.0) == []
    # After the end, the same kind is news again.
    assert gate.admit("aiokafka", "refused %s", "refused again", 41.0)


def test_a_single_warning_ends_silently() -> None:
    gate = FaultGate(summary_s=10, quiet_s=5)
    gate.admit("producer", "slow %s", "slow 1", 0.0)
    assert gate.tick(30.0) == []


def test_the_handler_gates_warnings_only_and_writes_every_info(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root_handler, listener, _gate = handler("json", summary_s=3600, quiet_s=3600)
    log = logging.getLogger("tests.logs.gated")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(root_handler)
    listener.start()
    try:
        for i in range(50):
            log.error("kafka unreachable: %s", f"attempt {i}")
        for i in range(5):
            log.info("request %d", i, extra={"fields": {"partition": i}})
    finally:
        listener.stop()
        log.removeHandler(root_handler)
    lines = [orjson.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert [d["msg"] for d in lines if d["level"] == "ERROR"] == ["kafka unreachable: attempt 0"]
    assert [d["partition"] for d in lines if d["level"] == "INFO"] == [0, 1, 2, 3, 4]


class _Writes(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def write(self, text: str) -> int:
        self.calls += 1
        return super().write(text)


def test_the_writer_writes_what_queued_up_in_one_write_and_everything_before_it_stops() -> None:
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    stream = _Writes()
    target = logging.StreamHandler(stream)
    target.setFormatter(Formatter("json"))
    writer = Writer(records, target)
    for i in range(100):
        records.put(record("request %d", i))
    writer.start()
    writer.stop()
    assert [orjson.loads(x)["msg"] for x in stream.getvalue().splitlines()] == [
        f"request {i}" for i in range(100)
    ]
    assert stream.calls == 1
