"""wrk's report parsed into the figures B1 uses, and the alternating rounds of its ratio."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, cast

import pytest

from bench.b1_producer import (
    ALTERNATING_ROUNDS,
    RESIGN_AFTER_S,
    Contender,
    Load,
    _alternating,
    cpu_s_per_1k,
    parse_wrk,
)
from bench.proc import Service

WRK = """Running 8s test @ http://127.0.0.1:4000/webhooks/agntix
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     8.12ms    2.00ms  40.00ms   90.00%
  Latency Distribution
     50%  796.00us
     75%    5.50ms
     90%   18.46ms
     99%    1.22s
  57781 requests in 8.02s, 12.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 35
  Non-2xx or 3xx responses: 81
Requests/sec:   7204.60
"""


def test_parse_wrk() -> None:
    r = parse_wrk(WRK)
    assert r["requests"] == 57781
    assert r["non2xx"] == 81
    assert r["errors"] == 37
    assert r["ok_rps"] == pytest.approx((57781 - 81) / 8.02, abs=0.1)
    assert r["p50_ms"] == 0.8
    assert r["p99_ms"] == 1220.0


def test_parse_wrk_refuses_other_output() -> None:
    with pytest.raises(ValueError, match="unexpected"):
        parse_wrk("connection refused")


def test_cpu_per_thousand_requests() -> None:
    assert cpu_s_per_1k(0.9, 6000.0) == 0.15
    assert cpu_s_per_1k(None, 6000.0) is None
    assert cpu_s_per_1k(0.9, 0.0) is None


class _Server:
    """Stands in for a Service: this process, so that its CPU time can be read."""

    pid = os.getpid()


class _Load:
    """Answers each closed-loop point by port, and remembers the order of the points."""

    def __init__(self, rates: dict[int, list[float]]) -> None:
        self.rates = rates
        self.ports: list[int] = []

    def closed(self, port: int, connections: int, seconds: float) -> dict[str, Any]:
        assert connections == port * 64  # each side at its own connection count
        rate = self.rates[port][sum(1 for p in self.ports if p == port)]
        self.ports.append(port)
        return {"rps": rate, "ok_rps": rate}


def test_alternating_rounds_flip_the_order_and_take_each_rounds_own_ratio() -> None:
    bare, producer = 1, 2
    load = _Load({bare: [100.0, 80.0, 100.0, 50.0], producer: [50.0, 48.0, 30.0, 40.0]})
    server = cast("Service", _Server())

    out = _alternating(
        cast("Load", load), Contender(server, bare, 64), Contender(server, producer, 128), 0.0
    )

    assert load.ports == [bare, producer, producer, bare, bare, producer, producer, bare]
    assert [r["ratio"] for r in out["rounds"]] == [0.5, 0.6, 0.3, 0.8]
    assert len(out["rounds"]) == ALTERNATING_ROUNDS
    assert out["ratio_median"] == 0.55


def _timestamps(load: Load) -> set[bytes]:
    found = re.findall(rb"svix-timestamp: (\d+)", load.file.read_bytes(), re.IGNORECASE)
    return set(found)


def test_the_load_is_signed_again_before_the_producer_would_find_it_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load = Load(tmp_path, 3)
    first = _timestamps(load)
    assert len(first) == 1
    load.fresh()  # just signed: kept
    assert _timestamps(load) == first
    later = time.time() + RESIGN_AFTER_S + 1
    monkeypatch.setattr("bench.webhooks.time.time", lambda: later)
    load.signed_at -= RESIGN_AFTER_S + 1
    load.fresh()
    assert _timestamps(load) == {str(int(later)).encode()}
