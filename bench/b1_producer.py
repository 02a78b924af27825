"""B1 producer saturation (closed loop, concurrency sweep) and B2 latency at fractions of it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import profile
from bench.context import Context
from bench.http_stack import server_commands
from bench.proc import (
    Service,
    broker_pid,
    cpu_seconds,
    fetch_text,
    free_port,
    python_module,
    wait_http,
)
from bench.stats import ScrapedHistogram, ratio
from bench.webhooks import PATH, ended_requests, write_requests, wrk_script

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_BASELINE = "uvicorn+uvloop+httptools (raw ASGI)"
_REQUEST_SECONDS = "sessionflow_webhook_request_seconds"
_PUBLISH_SECONDS = "sessionflow_kafka_publish_seconds"
# The ratio again as alternating rounds, each server at its best connection count of the sweep,
# both servers up: the sweeps run minutes apart, and the machine's drift between them moved the
# ratio by ±10% from run to run (bench/results/producer-experiments.md, section 11).
ALTERNATING_ROUNDS = 4
# The paced points' connections: a bound on requests in flight, set far above what the rate needs
# (about 40 at half load), so that a stall of the server or the machine delays what is due during
# it and no more. With 64 the generator queued the requests due during a 15-50 ms stall behind
# its busy connections, and its p99 at half load was 4.6-263 ms (median 14.1) where 1024 gave
# 4.8-28.7 (median 4.9) on the same producer (bench/results/producer-experiments.md, section 15).
PACED_CONNECTIONS = 1024
# The load's signatures are made again once this old: a point (at most its seconds plus the
# generator's 60 s limit) then ends well inside the producer's 300 s timestamp tolerance.
RESIGN_AFTER_S = 120.0


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if m is None:
        raise ValueError(f"not a wrk duration: {text}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    """wrk's text report -> requests, non-2xx, errors, duration and the latency percentiles."""
    m = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    if m is None:
        raise ValueError(f"unexpected wrk output:\n{out}")
    requests, elapsed_s = int(m.group(1)), _ms(m.group(2)) / 1000.0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = int(non2xx.group(1)) if non2xx else 0
    result: dict[str, Any] = {
        "requests": requests,
        "non2xx": bad,
        "errors": sum(int(g) for g in errors.groups()) if errors else 0,
        "elapsed_s": round(elapsed_s, 3),
        "rps": round(requests / elapsed_s, 1),
        "ok_rps": round((requests - bad) / elapsed_s, 1),
    }
    for q, value in re.findall(r"^\s+(50|90|99)(?:\.000)?%\s+([\d.]+\w+)", out, re.MULTILINE):
        result[f"p{q}_ms"] = round(_ms(value), 2)
    return result


class Load:
    """The load generator, always in its own process: wrk (C) when installed, else ours.

    Its requests are signed afresh once they are `RESIGN_AFTER_S` old: the producer refuses a
    signature more than 5 minutes old (401), and a long A/B runs for longer than that.
    """

    def __init__(self, workdir: Path, count: int) -> None:
        self.workdir = workdir
        self.count = count
        self.file = workdir / "requests.bin"
        self.script = workdir / "requests.lua"
        self.wrk = shutil.which("wrk")
        self.signed_at = 0.0
        self.body_bytes_mean = 0
        self._sign()

    def _sign(self) -> None:
        requests = ended_requests(self.count)
        self.signed_at = time.monotonic()
        self.body_bytes_mean = round(
            sum(len(r.split(b"\r\n\r\n", 1)[1]) for r in requests) / max(1, len(requests))
        )
        write_requests(self.file, requests)
        if self.wrk:
            wrk_script(self.script, requests)

    def fresh(self) -> None:
        """Sign the requests again if they are old enough to be refused during the next point."""
        if time.monotonic() - self.signed_at > RESIGN_AFTER_S:
            self._sign()

    def closed(self, port: int, connections: int, seconds: float) -> dict[str, Any]:
        self.fresh()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        if self.wrk:
            out = subprocess.run(
                [
                    self.wrk,
                    "-t1",
                    f"-c{connections}",
                    f"-d{max(1, round(seconds))}s",
                    "--latency",
                    "-s",
                    str(self.script),
                    f"http://127.0.0.1:{port}{PATH}",
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=seconds + 60,
            ).stdout
            result = parse_wrk(out)
            result["loadgen"] = "wrk -t1"
        else:
            result = self._ours(port, connections, seconds, 0.0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        result["loadgen_cpu_cores"] = round(cpu / max(result["elapsed_s"], 1e-9), 2)
        return result

    def paced(self, port: int, connections: int, seconds: float, rate: float) -> dict[str, Any]:
        self.fresh()
        result = self._ours(port, connections, seconds, rate)
        result["loadgen_cpu_cores"] = round(result["loadgen_cpu_s"] / result["elapsed_s"], 2)
        return result

    def _ours(self, port: int, connections: int, seconds: float, rate: float) -> dict[str, Any]:
        out = subprocess.run(
            python_module(
                "bench.httpload",
                "--port",
                str(port),
                "--requests",
                str(self.file),
                "--connections",
                str(connections),
                "--seconds",
                str(seconds),
                "--rate",
                str(rate),
            ),
            capture_output=True,
            check=False,
            timeout=seconds + 60,
        )
        if out.returncode != 0:
            raise RuntimeError(f"load generator failed:\n{out.stderr.decode()[-3000:]}")
        result: dict[str, Any] = orjson.loads(out.stdout.splitlines()[-1])
        return result


def cpu_s_per_1k(cores: float | None, per_second: float) -> float | None:
    """CPU seconds a thousand requests took, from the cores a process used at a rate (its
    threads included: librdkafka's for the producer)."""
    if cores is None or per_second <= 0:
        return None
    return round(cores / per_second * 1000, 3)


def _measured(
    load: Load, service: Service, port: int, connections: int, seconds: float
) -> dict[str, Any]:
    broker = broker_pid()
    cpu0, bcpu0, t0 = cpu_seconds(service.pid), broker and cpu_seconds(broker), time.monotonic()
    result = load.closed(port, connections, seconds)
    elapsed = time.monotonic() - t0
    cpu1, bcpu1 = cpu_seconds(service.pid), broker and cpu_seconds(broker)
    result["connections"] = connections
    if cpu0 is not None and cpu1 is not None:
        result["server_cpu_cores"] = round((cpu1 - cpu0) / elapsed, 2)
    if bcpu0 and bcpu1:
        result["broker_cpu_cores"] = round((bcpu1 - bcpu0) / elapsed, 2)
    return result


@contextlib.contextmanager
def _bare_endpoint(
    workdir: Path, load: Load, *, own_stack: bool = False
) -> Iterator[tuple[Service, int]]:
    """A bare endpoint that reads the body and answers at once. The baseline the issue set:
    uvicorn, as the producer configures it (`producer.server.stack_config`). With `own_stack`:
    the producer's own HTTP layer (`bench/bare_http1.py`), which its public listener runs on."""
    port = free_port()
    if own_stack:
        cmd = [sys.executable, str(Path(__file__).with_name("bare_http1.py")), str(port)]
    else:
        cmd = server_commands(workdir, port)[_BASELINE]  # writes the bare ASGI module into workdir
    name = "baseline-http1" if own_stack else "baseline-http"
    baseline = Service(name, cmd, os.environ, workdir, cwd=workdir)
    try:
        wait_http(f"http://127.0.0.1:{port}/", baseline.proc, 30, baseline.log)
        load.closed(port, 64, 2)  # warm-up
        yield baseline, port
    finally:
        baseline.stop()


@dataclass(frozen=True)
class Contender:
    """One side of the alternating rounds: a running server and the load it is measured at."""

    service: Service
    port: int
    connections: int


def _alternating(
    load: Load, bare: Contender, producer: Contender, seconds: float
) -> dict[str, Any]:
    """Bare endpoint and producer in turn (bare first in even rounds, producer first in odd
    ones), each round's ratio from its own two points; the idle server takes no requests."""
    rounds = []
    for i in range(ALTERNATING_ROUNDS):
        turns = [("bare", bare), ("producer", producer)]
        measured = {
            name: _measured(load, side.service, side.port, side.connections, seconds)
            for name, side in (turns if i % 2 == 0 else turns[::-1])
        }
        bare_rps, accepted = measured["bare"]["rps"], measured["producer"]["ok_rps"]
        rounds.append(
            {
                "bare_rps": bare_rps,
                "producer_rps": accepted,
                "ratio": ratio(accepted, bare_rps),
                "producer_cpu_s_per_1k": cpu_s_per_1k(
                    measured["producer"].get("server_cpu_cores"), accepted
                ),
            }
        )
    ratios = [r["ratio"] for r in rounds if r["ratio"] is not None]
    return {
        "connections": {"bare": bare.connections, "producer": producer.connections},
        "rounds": rounds,
        "ratio_median": round(statistics.median(ratios), 3) if ratios else None,
    }


def _paced_with_own_view(
    load: Load, port: int, metrics_url: str, seconds: float, rate: float
) -> dict[str, Any]:
    """A paced point, with the producer's own histograms of it: the request as the server timed
    it, and the publish from the send to the broker's acknowledgement."""
    before = fetch_text(metrics_url)
    point = load.paced(port, PACED_CONNECTIONS, seconds, rate)
    point["connections"] = PACED_CONNECTIONS
    after = fetch_text(metrics_url)
    for key, name in (("server", _REQUEST_SECONDS), ("publish", _PUBLISH_SECONDS)):
        seen = ScrapedHistogram.read(after, name).since(ScrapedHistogram.read(before, name))
        point[key] = seen.summary_ms()
    return point


def run(ctx: Context) -> dict[str, Any]:
    workdir = ctx.workdir
    load = Load(workdir, 2000)
    out: dict[str, Any] = {"loadgen": "wrk -t1" if load.wrk else "asyncio raw sockets (ours)"}
    out["body_bytes_mean"] = load.body_bytes_mean

    with _bare_endpoint(workdir, load) as (baseline, port):
        out["baseline"] = [_measured(load, baseline, port, c, ctx.seconds) for c in ctx.concurrency]
    with _bare_endpoint(workdir, load, own_stack=True) as (baseline, port):
        out["baseline_own_stack"] = [
            _measured(load, baseline, port, c, ctx.seconds) for c in ctx.concurrency
        ]

    namespace = ctx.namespace("producer")
    asyncio.run(ctx.make_topics(namespace))
    port, admin_port = free_port(), free_port()
    producer = Service(
        "producer",
        python_module("cli", "producer"),
        ctx.env(namespace, SESSIONFLOW_HTTP_PORT=str(port), SESSIONFLOW_ADMIN_PORT=str(admin_port)),
        workdir,
    )
    try:
        wait_http(f"http://127.0.0.1:{admin_port}/readyz", producer.proc, 60, producer.log)
        load.closed(port, 64, 2)  # warm-up: connections, Kafka batches, caches
        points = []
        for c in ctx.concurrency:
            spy = None
            if ctx.profile and c == 64:
                spy = profile.start_record(
                    producer.pid, max(2, int(ctx.seconds) - 2), workdir / "producer.spy"
                )
            points.append(_measured(load, producer, port, c, ctx.seconds))
            if spy is not None:
                out["producer_profile"] = profile.finish(spy, workdir / "producer.spy")
        out["producer"] = points
        top = max(points, key=lambda p: p["ok_rps"])
        best = top["ok_rps"]
        sweep = []
        metrics_url = f"http://127.0.0.1:{admin_port}/metrics"
        for share in (0.25, 0.5, 0.75):
            rate = max(50.0, share * best)
            point = _paced_with_own_view(load, port, metrics_url, ctx.seconds, rate)
            point["share_of_max"] = share
            sweep.append(point)
        out["paced"] = sweep
        half = out["paced"][1]
        base_top = max(out["baseline"], key=lambda p: p["rps"])
        base_best = base_top["rps"]
        own_top = max(out["baseline_own_stack"], key=lambda p: p["rps"])
        with _bare_endpoint(workdir, load) as (baseline, bare_port):
            out["alternating"] = _alternating(
                load,
                Contender(baseline, bare_port, base_top["connections"]),
                Contender(producer, port, top["connections"]),
                ctx.seconds,
            )
            # The floor of the half-load latency: the load generator and the bare stack, at the
            # same rate.
            out["baseline_half_load"] = load.paced(
                bare_port, PACED_CONNECTIONS, ctx.seconds, half["target_rps"]
            )
    finally:
        producer.stop()

    out["figures"] = {
        "producer_rps": best,
        "producer_baseline_rps": base_best,
        "producer_ratio": ratio(best, base_best),
        "producer_ratio_alternating": out["alternating"]["ratio_median"],
        "producer_cpu_s_per_1k": cpu_s_per_1k(top.get("server_cpu_cores"), best),
        "producer_baseline_cpu_s_per_1k": cpu_s_per_1k(base_top.get("server_cpu_cores"), base_best),
        "producer_baseline_own_stack_rps": own_top["rps"],
        "producer_ratio_own_stack": ratio(best, own_top["rps"]),
        "producer_baseline_own_stack_cpu_s_per_1k": cpu_s_per_1k(
            own_top.get("server_cpu_cores"), own_top["rps"]
        ),
        "producer_p50_ms_half_load": half.get("p50_ms"),
        "producer_p99_ms_half_load": half.get("p99_ms"),
        "producer_p999_ms_half_load": half.get("p999_ms"),
        "producer_baseline_p99_ms_half_load": out["baseline_half_load"].get("p99_ms"),
        "producer_server_p99_ms_half_load": half["server"]["p99_ms"],
        "producer_publish_p99_ms_half_load": half["publish"]["p99_ms"],
        "producer_half_load_rps": half.get("ok_rps"),
    }
    return out
