"""The sender's progress line."""

from __future__ import annotations

import io

from cli import progress
from cli.delivery import Snapshot


def test_plain_progress_writes_periodic_lines() -> None:
    out = io.StringIO()
    line = progress.PlainProgress(out, every_s=0.0)
    line.update(Snapshot(done=5, total=10, requests=6, ok=5, retries=1, failed=0))
    line.update(Snapshot(done=10, total=10, requests=11, ok=10, retries=1, failed=0))
    line.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "5/10" in lines[0]
    assert "retries 1" in lines[0]
    assert "10/10" in lines[1]
    assert "100.0%" in lines[1]
