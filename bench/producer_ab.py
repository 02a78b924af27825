"""A/B of producer variants in alternating runs: B1's saturation point and B2's paced latency.

Each variant is a source tree (e.g. `git archive <commit> | tar -x -C /tmp/base`) run with
this environment's interpreter; `.` is the working tree. Rounds alternate the variants (and
reverse their order every other round) so that a noisy, shared machine hurts them alike; a
bare endpoint on the same server stack is measured in every round for the ratio.

    python -m bench.producer_ab --variant base=/tmp/base --variant new=. [--rounds 3]

Prints one JSON object: per variant and figure, every round's value and their median.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

import orjson

from bench.b1_producer import _BASELINE, PACED_CONNECTIONS, Load
from bench.context import Context
from bench.http_stack import server_commands
from bench.proc import Service, cpu_seconds, free_port, python_module, wait_http


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (a supervised producer's children)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                queue.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                continue
    return found


def tree_cpu(pid: int) -> float:
    return sum(cpu_seconds(p) or 0.0 for p in descendants(pid))


def cli_module(src: Path) -> str:
    """The command line of the variant at `src`: `cli`, or `sessionflow.cli` in trees from
    before issue 16 moved it (the issue's starting point, `8d71518`, among them)."""
    return "cli" if (src / "cli").is_dir() else "sessionflow.cli"


def run_variant(
    ctx: Context,
    load: Load,
    name: str,
    src: Path,
    seconds: float,
    paced_rate: float,
    extra: dict[str, str],
    connections: int,
) -> dict[str, Any]:
    namespace = ctx.namespace(f"ab-{name}-{time.monotonic_ns() % 10**8}")
    asyncio.run(ctx.make_topics(namespace))
    port = free_port()
    admin = free_port(room=int(extra.get("SESSIONFLOW_HTTP_PROCESSES", "1")))
    env = ctx.env(
        namespace,
        SESSIONFLOW_HTTP_PORT=str(port),
        SESSIONFLOW_ADMIN_PORT=str(admin),
        PYTHONPATH=str(src.resolve()),
        **extra,
    )
    service = Service(
        f"producer-{name}", python_module(cli_module(src), "producer"), env, ctx.workdir, cwd=src
    )
    try:
        wait_http(f"http://127.0.0.1:{admin}/readyz", service.proc, 60, service.log)
        load.closed(port, connections, 2)  # warm-up
        cpu0, t0 = tree_cpu(service.pid), time.monotonic()
        closed = load.closed(port, connections, seconds)
        if closed["ok_rps"] < 0.5 * closed["rps"]:
            # Refused, not accepted: the figures would not be the webhook's (stale signatures
            # once gave a run three rounds of 401s and zeros).
            raise RuntimeError(
                f"{name}: {closed['ok_rps']}/s of {closed['rps']}/s answered 2xx; see {service.log}"
            )
        closed["server_cpu_cores"] = round(
            (tree_cpu(service.pid) - cpu0) / (time.monotonic() - t0), 2
        )
        own_half = load.paced(port, PACED_CONNECTIONS, seconds, max(50.0, 0.5 * closed["ok_rps"]))
        fixed = load.paced(port, PACED_CONNECTIONS, seconds, paced_rate)
    finally:
        service.stop()
    cpu_per_1k = (
        round(1000 * closed["server_cpu_cores"] / closed["ok_rps"], 4)
        if closed.get("server_cpu_cores") and closed["ok_rps"]
        else None
    )
    return {
        "ok_rps": closed["ok_rps"],
        "p99_ms_closed": closed.get("p99_ms"),
        "server_cpu_cores": closed.get("server_cpu_cores"),
        "cpu_s_per_1k": cpu_per_1k,
        "p99_ms_half_own": own_half.get("p99_ms"),
        "half_own_rps": own_half.get("ok_rps"),
        f"p99_ms_at_{int(paced_rate)}": fixed.get("p99_ms"),
        f"p50_ms_at_{int(paced_rate)}": fixed.get("p50_ms"),
    }


def baseline(ctx: Context, load: Load, seconds: float, connections: int) -> float:
    port = free_port()
    cmd = server_commands(ctx.workdir, port)[_BASELINE]
    service = Service("baseline-http", cmd, os.environ, ctx.workdir, cwd=ctx.workdir)
    try:
        wait_http(f"http://127.0.0.1:{port}/", service.proc, 30, service.log)
        load.closed(port, connections, 2)
        return float(load.closed(port, connections, seconds)["rps"])
    finally:
        service.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--variant", action="append", required=True, help="NAME=SOURCE_DIR")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--paced-rate", type=float, default=5000.0)
    parser.add_argument("--connections", type=int, default=64, help="of the closed-loop points")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        help="NAME:VAR=VALUE, an extra variable for one variant",
    )
    args = parser.parse_args()
    variants = [(v.split("=", 1)[0], Path(v.split("=", 1)[1])) for v in args.variant]
    extras: dict[str, dict[str, str]] = {}
    for item in args.env:
        name, assignment = item.split(":", 1)
        var, value = assignment.split("=", 1)
        extras.setdefault(name, {})[var] = value
    ctx = Context()
    load = Load(ctx.workdir, 2000)
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in variants}
    bases: list[float] = []
    try:
        for i in range(args.rounds):
            bases.append(baseline(ctx, load, args.seconds, args.connections))
            order = variants if i % 2 == 0 else list(reversed(variants))
            for name, src in order:
                rounds[name].append(
                    run_variant(
                        ctx,
                        load,
                        name,
                        src,
                        args.seconds,
                        args.paced_rate,
                        extras.get(name, {}),
                        args.connections,
                    )
                )
    finally:
        ctx.cleanup()
    out: dict[str, Any] = {
        "loadgen": "wrk -t1" if load.wrk else "asyncio (ours)",
        "connections": args.connections,
        "baseline_rps": {"rounds": bases, "median": statistics.median(bases)},
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    for name, results in rounds.items():
        figures: dict[str, Any] = {}
        for key in results[0]:
            values = [r[key] for r in results if r.get(key) is not None]
            figures[key] = {
                "rounds": values,
                "median": statistics.median(values) if values else None,
            }
        ratios = [r["ok_rps"] / b for r, b in zip(results, bases, strict=True)]
        figures["ratio_to_baseline"] = {
            "rounds": [round(x, 3) for x in ratios],
            "median": round(statistics.median(ratios), 3),
        }
        out[name] = figures
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
