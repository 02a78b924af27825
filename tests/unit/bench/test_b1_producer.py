"""wrk's report parsed into the figures B1 uses."""

from __future__ import annotations

import pytest

from bench.b1_producer import cpu_s_per_1k, parse_wrk

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
