"""The run's outputs: results JSON (timestamped and latest), a latency-vs-load PNG, a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from bench.stats import GOALS

RESULTS = Path(__file__).resolve().parent / "results"


def write_json(results: dict[str, Any], stamp: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    data = orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    (RESULTS / f"{stamp}.json").write_bytes(data)
    (RESULTS / "latest.json").write_bytes(data)
    return RESULTS / "latest.json"


def plot(details: dict[str, Any], stamp: str) -> Path | None:
    """p50/p99 latency against accepted requests/s: closed-loop sweep and paced points."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    b1 = details.get("b1") or {}
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    series = [
        ("producer, closed loop (wrk)", b1.get("producer", []), "ok_rps", "o"),
        ("producer, paced (open loop)", b1.get("paced", []), "ok_rps", "s"),
        ("bare endpoint baseline", b1.get("baseline", []), "rps", "^"),
    ]
    for label, points, x_key, marker in series:
        points = [p for p in points if p.get("p99_ms") is not None]
        if not points:
            continue
        # Closed-loop points in the order the load grew (connections), paced ones by rate.
        points = sorted(points, key=lambda p: p.get("connections") or p[x_key])
        xs = [p[x_key] for p in points]
        for p in points:
            if p.get("connections"):
                ax.annotate(f"c={p['connections']}", (p[x_key], p["p99_ms"]), fontsize=6)
        ax.plot(xs, [p["p99_ms"] for p in points], marker=marker, label=f"{label} p99")
        ax.plot(
            xs, [p["p50_ms"] for p in points], marker=marker, linestyle=":", label=f"{label} p50"
        )
    ax.set_xlabel("accepted requests/s")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title("Producer latency against load (signed ~2 KB session.ended, acks=all)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "latest.png"
    fig.savefig(path)
    fig.savefig(RESULTS / f"{stamp}.png")
    plt.close(fig)
    return path


def _fmt(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _profile_lines(title: str, prof: dict[str, Any] | None) -> list[str]:
    if not prof or not prof.get("samples"):
        return [f"- {title}: no profile ({(prof or {}).get('error', 'not taken')})"]
    lines = [f"- **{title}** ({prof['samples']} samples, py-spy, % of samples):"]
    lines.append(
        "  - by package (innermost frame): "
        + ", ".join(f"{n} {p}%" for n, p in prof.get("packages", [])[:8])
    )
    lines.append("  - top frames (self): " + "; ".join(f"`{n}` {p}%" for n, p in prof["self"][:6]))
    if prof.get("project"):
        lines.append(
            "  - our code (inclusive): " + "; ".join(f"`{n}` {p}%" for n, p in prof["project"][:6])
        )
    return lines


def markdown(results: dict[str, Any], details: dict[str, Any], notes: list[str]) -> str:
    m = results.get("machine", {})
    out = [
        f"# sessionflow bench — {results.get('run_at', '')}",
        "",
        f"{m.get('cores')} cores ({m.get('cpu')}), Python {m.get('python')}, Kafka {m.get('kafka')},"
        f" broker on the same machine (holding {m.get('broker_partitions_at_start')} partitions at"
        f" start); load average at start {m.get('loadavg_at_start')}."
        f" Run took {_fmt(results.get('bench_duration_s'))} s. Every figure has a same-run baseline.",
        "",
        "## Goals",
        "",
        "| figure | value | goal | met |",
        "|---|---|---|---|",
    ]
    for goal in GOALS:
        met = goal.met(results)
        out.append(
            f"| `{goal.key}` | {_fmt(results.get(goal.key))} | {goal.label} |"
            f" {'yes' if met else 'no' if met is False else 'n/a'} |"
        )
    out += [
        "",
        "## Figures",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    for key in sorted(results):
        if key in ("machine", "errors"):
            continue
        out.append(f"| `{key}` | {_fmt(results[key])} |")
    if results.get("errors"):
        out += ["", "## Errors", ""] + [f"- {k}: {v}" for k, v in results["errors"].items()]
    out += ["", "## Profiles (hot paths under load)", ""]
    out += _profile_lines(
        "producer under B1 load (64 connections)", (details.get("b1") or {}).get("producer_profile")
    )
    out += _profile_lines(
        "worker draining B3 (exactly-once)",
        ((details.get("b3") or {}).get("eos") or {}).get("profile"),
    )
    if notes:
        out += ["", "## Reading the figures", ""] + [f"- {n}" for n in notes]
    out.append("")
    return "\n".join(out)


def write_markdown(text: str) -> Path:
    path = RESULTS / "latest.md"
    path.write_text(text)
    return path
