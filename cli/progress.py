"""How `sessionflow send` shows its progress (a live line) and its closing summary."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections import Counter
from typing import TextIO

from cli.delivery import ProgressSink, SendReport, Snapshot


class PlainProgress:
    """One status line: redrawn in place on a terminal, a periodic line otherwise."""

    def __init__(self, stream: TextIO = sys.stderr, every_s: float = 2.0) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._every_s = 0.0 if self._tty else every_s
        self._last = -math.inf
        self._started = time.monotonic()
        self._line = ""

    def update(self, snapshot: Snapshot) -> None:
        now = time.monotonic()
        if now - self._last < self._every_s and snapshot.done < snapshot.total:
            return
        self._last = now
        pct = 100.0 * snapshot.done / snapshot.total if snapshot.total else 100.0
        rate = snapshot.requests / max(now - self._started, 1e-9)
        line = (
            f"sent {snapshot.done}/{snapshot.total} ({pct:5.1f}%)  2xx {snapshot.ok}  "
            f"retries {snapshot.retries}  failed {snapshot.failed}  {rate:,.0f} req/s"
        )
        if line == self._line:
            return
        self._line = line
        self._stream.write(f"\r{line}" if self._tty else f"{line}\n")
        self._stream.flush()

    def close(self) -> None:
        if self._tty and self._line:
            self._stream.write("\n")
            self._stream.flush()


class RichProgress:
    """A rich progress bar (used when `rich` is installed and stderr is a terminal)."""

    def __init__(self) -> None:
        # rich is optional: present in dev environments, not a runtime dependency.
        from rich.console import Console  # type: ignore[import-not-found, unused-ignore]
        from rich.progress import (  # type: ignore[import-not-found, unused-ignore]
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("sending"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._task = self._progress.add_task("send", total=None, stats="")
        self._progress.start()

    def update(self, snapshot: Snapshot) -> None:
        self._progress.update(
            self._task,
            total=snapshot.total,
            completed=snapshot.done,
            stats=f"2xx {snapshot.ok}  retries {snapshot.retries}  failed {snapshot.failed}",
        )

    def close(self) -> None:
        self._progress.stop()


def progress_sink() -> ProgressSink:
    if sys.stderr.isatty():
        with contextlib.suppress(ImportError):
            return RichProgress()
    return PlainProgress()


def render_summary(report: SendReport) -> str:
    """The closing summary for humans (the JSON summary has the same numbers and the ids)."""
    s = report.summary()
    exp = s["expected"]
    reasons = Counter(exp["incomplete_sessions"].values())
    lat = s["latency_ms"]

    def ms(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1f} ms"

    statuses = ", ".join(f"{k}: {v}" for k, v in s["status_counts"].items()) or "none"
    kinds = ", ".join(f"{k} {v}" for k, v in s["deliveries_by_kind"].items())
    rps = s["requests_per_second"]
    lines = [
        f"sessionflow send -> {report.url}",
        f"  deliveries  {s['deliveries']} ({kinds})",
        f"  sent        {s['requests']} requests in {s['elapsed_seconds']:.2f} s"
        + (f" ({rps:,.0f}/s)" if rps else ""),
        f"  status      {statuses}",
        f"  latency     p50 {ms(lat['p50'])}  p99 {ms(lat['p99'])}  max {ms(lat['max'])}",
        f"  retries     {s['retries']}",
        f"  failures    {s['failures']} events never got a 2xx",
        f"  expected    {exp['completed']} completed sessions, {exp['incomplete']} incomplete"
        + (
            " (" + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) + ")"
            if reasons
            else ""
        )
        + f", {exp['planned_events']} planned-type events",
    ]
    return "\n".join(lines) + "\n"
