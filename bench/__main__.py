"""`python -m bench` (`make bench`): B1..B5 against the broker, results into bench/results/.

Knobs (environment): KAFKA_BOOTSTRAP_SERVERS, BENCH_SECONDS (per load point, 8),
BENCH_CONCURRENCY (16,64,256), BENCH_WORKER_SESSIONS (8000 -> 20,000 events),
BENCH_E2E_RATE (400 events/s), BENCH_E2E_SECONDS (15), BENCH_STATE_SESSIONS (1,000,000;
a smaller count is extrapolated linearly to 1M and says so), BENCH_PARTITIONS (12),
BENCH_PROFILE (1: py-spy the producer and the worker under load), BENCH_ONLY (e.g. "b1,b3").
A benchmark that fails is reported in `errors`, and a run in which a benchmark could not measure
(an error, or a required figure left empty) exits non-zero; a run never fails for being slow.
`python -m bench --report` rebuilds latest.md and the plot from the last results.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import orjson

from bench import b1_producer, b3_worker, b4_e2e, b5_state, report
from bench.context import Context
from bench.notes import notes
from bench.proc import machine
from sessionflow.topics import partition_count

# A fresh broker holds its 24 internal partitions; one that kept about 1,500 of earlier runs
# answered B1 four times slower (bench/results/producer-experiments.md, section 8).
CROWDED_BROKER_PARTITIONS = 500

REQUIRED = (
    "producer_rps",
    "producer_baseline_rps",
    "producer_p99_ms_half_load",
    "worker_eps_eos",
    "worker_eps_alo",
    "worker_baseline_eps",
    "e2e_p99_ms_alo",
    "e2e_p99_ms_eos",
    "state_rss_mb_1m",
    "state_restore_s_1m",
)

# Which benchmark measures the required figures of each prefix.
_FIGURE_OWNERS = {"producer": "b1", "worker": "b3", "e2e": "b4", "state": "b5"}

BENCHES: dict[str, Callable[[Context], dict[str, Any]]] = {
    "b1": b1_producer.run,
    "b3": b3_worker.run,
    "b4": b4_e2e.run,
    "b5": b5_state.run,
}


def rewrite_report() -> int:
    """Rebuild latest.md and the plot from latest.json and its details (no benchmark run)."""
    results = orjson.loads((report.RESULTS / "latest.json").read_bytes())
    details_path = report.RESULTS / f"{results['run_at']}-details.json"
    details = orjson.loads(details_path.read_bytes()) if details_path.exists() else {}
    report.plot(details, results["run_at"])
    report.write_markdown(report.markdown(results, details, notes(results, details)))
    return 0


def main() -> int:
    if "--report" in sys.argv[1:]:
        return rewrite_report()
    logging.basicConfig(level=logging.ERROR)
    only = {b.strip() for b in os.environ.get("BENCH_ONLY", "b1,b3,b4,b5").split(",")}
    ctx = Context()
    started = time.monotonic()
    results: dict[str, Any] = {
        "run_at": ctx.stamp,
        "machine": machine(),
        "namespace": ctx.prefix,
        **dict.fromkeys(REQUIRED),
    }
    details: dict[str, Any] = {}
    errors: dict[str, str] = {}
    print(f"bench: run {ctx.prefix} against {ctx.bootstrap}; scratch {ctx.workdir}")
    held = asyncio.run(partition_count(ctx.bootstrap))
    results["machine"]["broker_partitions_at_start"] = held
    if held > CROWDED_BROKER_PARTITIONS:
        print(
            f"bench: the broker holds {held} partitions before this run; a broker crowded with"
            " other runs' topics answers slower (make kafka-reset for a fresh one)"
        )
    try:
        for name, bench in BENCHES.items():
            if name not in only:
                continue
            t0 = time.monotonic()
            print(f"bench: {name} ...", flush=True)
            try:
                details[name] = bench(ctx)
                results.update(details[name].get("figures", {}))
            except Exception as exc:  # one failed benchmark must not lose the others' figures
                errors[name] = f"{type(exc).__name__}: {exc}"[-800:]
                traceback.print_exc()
            print(f"bench: {name} done in {time.monotonic() - t0:.0f} s", flush=True)
    finally:
        ctx.cleanup()
    results["bench_duration_s"] = round(time.monotonic() - started, 1)
    b1 = details.get("b1") or {}
    results["producer_sweep"] = [
        {
            k: p.get(k)
            for k in (
                "connections",
                "ok_rps",
                "p50_ms",
                "p99_ms",
                "server_cpu_cores",
                "loadgen_cpu_cores",
            )
        }
        for p in b1.get("producer", [])
    ]
    results["producer_paced"] = [
        {k: p.get(k) for k in ("ok_rps", "p50_ms", "p99_ms", "p999_ms")}
        for p in b1.get("paced", [])
    ]
    if errors:
        results["errors"] = errors
    path = report.write_json(results, ctx.stamp)
    (report.RESULTS / f"{ctx.stamp}-details.json").write_bytes(
        orjson.dumps(details, option=orjson.OPT_INDENT_2)
    )
    png = report.plot(details, ctx.stamp)
    md = report.write_markdown(report.markdown(results, details, notes(results, details)))
    print(f"bench: wrote {path}, {md}" + (f", {png}" if png else " (no matplotlib: no plot)"))
    for key in REQUIRED:
        print(f"  {key:28s} {results.get(key)}")
    unmeasured = [
        k for k in REQUIRED if _FIGURE_OWNERS[k.split("_")[0]] in only and results.get(k) is None
    ]
    for name, error in errors.items():
        print(f"bench: {name} could not measure: {error}", file=sys.stderr)
    if unmeasured:
        print(f"bench: figures not measured: {', '.join(unmeasured)}", file=sys.stderr)
    return 1 if errors or unmeasured else 0


if __name__ == "__main__":
    raise SystemExit(main())
