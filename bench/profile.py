"""py-spy sampling of a running process under load, summarised as the frames that cost most."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    """The py-spy binary: next to this interpreter (the venv), else on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def start_record(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes] | None:
    """Sample `pid` for `seconds` (non-blocking: the target is never paused) into `out`."""
    exe = py_spy()
    if exe is None:
        return None
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            "100",
            "--nonblocking",
            "--full-filenames",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


REPO = Path(__file__).resolve().parent.parent


def _split(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame.strip())
    if m is None:
        return frame.strip(), ""
    return m.group("func"), m.group("file").replace("\\", "/")


def short_frame(frame: str) -> str:
    """`func (a/b/c/file.py:12)` -> `func (c/file.py)`: the line number dropped to group by function."""
    func, path = _split(frame)
    if not path:
        return func
    return f"{func} ({'/'.join(path.split('/')[-2:])})"


def package_of(frame: str) -> str:
    """The distribution a frame runs in: `aiokafka`, `faust`, ..., `stdlib` or a project package."""
    _func, path = _split(frame)
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    repo = f"{REPO}/"
    if path.startswith(repo):
        return path[len(repo) :].split("/", 1)[0].removesuffix(".py")
    return "stdlib" if path else "native"


def summarize(lines: Iterable[str], top: int = 10) -> dict[str, object]:
    """Collapsed stacks (`f1;f2;f3 count`) -> the costliest frames and packages, in % of samples.

    `self`: where the CPU was (the innermost frame); `packages`: the same by package;
    `project`: our own functions with everything they call (event-loop roots left out).
    """
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    project: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[short_frame(frames[-1])] += count
        packages[package_of(frames[-1])] += count
        for f in {
            short_frame(f) for f in frames if package_of(f) in ("producer", "streams", "tables")
        }:
            project[f] += count

    def pct(counter: Counter[str]) -> list[list[object]]:
        return [[name, round(100.0 * n / total, 1)] for name, n in counter.most_common(top)]

    if total == 0:
        return {"samples": 0, "self": [], "packages": [], "project": []}
    return {"samples": total, "self": pct(own), "packages": pct(packages), "project": pct(project)}


def finish(proc: subprocess.Popen[bytes] | None, out: Path, top: int = 10) -> dict[str, object]:
    if proc is None:
        return {"error": "py-spy not installed"}
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if not out.exists():
        return {"error": f"py-spy exited {proc.returncode} without output"}
    return summarize(out.read_text(errors="replace").splitlines(), top)
