"""Processes the benchmarks start: ports, readiness, CPU and memory from /proc, machine facts."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")


PORT_BLOCK = 16  # ports p with p // PORT_BLOCK % lanes == lane belong to one lane


class _PortBook:
    """The ports this process has handed out, and its lane among processes picking side by side.

    The kernel may give the same port to two `bind(0)` calls once the first socket is closed, and
    a process started with that port binds it only seconds later: two ports picked in a row could
    be one. So a port is handed out at most once per process, and processes that pick at the same
    time (`make test`'s two streams) each keep to their own blocks of ports."""

    def __init__(self) -> None:
        self.handed: set[int] = set()
        self.lane, self.lanes = 0, 1

    def takes(self, ports: range) -> bool:
        return all(
            p // PORT_BLOCK % self.lanes == self.lane and p not in self.handed for p in ports
        )


_PORTS = _PortBook()


def share_ports(lane: int, lanes: int) -> tuple[int, int]:
    """This process picks ports beside `lanes` - 1 others; it keeps to lane `lane` of them.
    Returns the lane and lanes it kept to before."""
    if not 0 <= lane < lanes:
        raise ValueError(f"lane {lane} is not one of {lanes}")
    before = _PORTS.lane, _PORTS.lanes
    _PORTS.lane, _PORTS.lanes = lane, lanes
    return before


def free_port(room: int = 1) -> int:
    """A free loopback port p, with p + 1 .. p + room - 1 free too (a producer of several
    processes serves admin ports p + i), none of them handed out before by this process or in
    another's lane. A port the kernel gives for binding is often next to one it gave a client
    connection, so the neighbours are checked, not assumed."""
    for _ in range(1000):
        with contextlib.ExitStack() as held:
            socks = [held.enter_context(socket.socket()) for _ in range(room)]
            socks[0].bind(("127.0.0.1", 0))
            port: int = socks[0].getsockname()[1]
            if not _PORTS.takes(range(port, port + room)):
                continue
            try:
                for i, sock in enumerate(socks[1:], start=1):
                    sock.bind(("127.0.0.1", port + i))
            except OSError:
                continue
            _PORTS.handed.update(range(port, port + room))
            return port
    raise RuntimeError(f"no {room} adjacent free ports on loopback in lane {_PORTS.lane}")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process (its threads included), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_mb(pid: int) -> float | None:
    """The process's resident memory now; None once it is gone."""
    return _status_mb(pid, "VmRSS:")


def peak_rss_mb(pid: int) -> float | None:
    """The most the process has held resident since it started (the kernel's high-water mark):
    what a memory limit must cover, which one sample of `rss_mb` can miss."""
    return _status_mb(pid, "VmHWM:")


def _status_mb(pid: int, field: str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def dir_mb(path: Path) -> float:
    """Bytes under `path`, plus Faust's `<path>-<partition>.db` RocksDB folders beside it
    (an absolute `rocksdb://` store URL puts them there, not inside the data dir)."""
    total = 0
    for top in [path, *path.parent.glob(f"{path.name}-*.db")]:
        for root, _dirs, files in os.walk(top):
            for name in files:
                try:
                    total += (Path(root) / name).stat().st_size
                except OSError:
                    continue
    return total / (1024.0 * 1024.0)


def broker_pid() -> int | None:
    """The local broker's JVM (the `make kafka-up` one), found by its main class."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"kafka.Kafka" in cmdline and b"java" in cmdline:
            return int(entry.name)
    return None


def kafka_version() -> str:
    libs = REPO / ".cache" / "kafka" / "libs"
    for jar in sorted(libs.glob("kafka-clients-*.jar")) if libs.is_dir() else []:
        return jar.name.removeprefix("kafka-clients-").removesuffix(".jar")
    pom = REPO / "deploy" / "kafka" / "pom.xml"
    for line in pom.read_text().splitlines() if pom.exists() else []:
        if "<kafka.version>" in line:
            return line.split(">")[1].split("<")[0] + " (declared)"
    return "unknown"


def machine() -> dict[str, object]:
    def version(name: str) -> str:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as v

        try:
            return v(name)
        except PackageNotFoundError:
            return "absent"

    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kafka": kafka_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "aiokafka": version("aiokafka"),
        "faust": version("faust-streaming"),
        "uvicorn": version("uvicorn"),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fetch_text(url: str, timeout_s: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as r:  # noqa: S310 - loopback only
        text: str = r.read().decode()
    return text


def wait_http(url: str, proc: subprocess.Popen[bytes] | None, timeout_s: float, log: Path) -> float:
    """Poll `url` until 200; the seconds it took. Raises if the process exits or time runs out."""
    start = time.monotonic()
    deadline = start + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited {proc.returncode}:\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - loopback only
                if r.status == 200:
                    return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready within {timeout_s:.0f} s:\n{tail(log)}")


def wait_port(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:.0f} s")


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Service:
    """A child process with its log in a file; stopped (TERM, then KILL) by `stop`."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        env: Mapping[str, str],
        logdir: Path,
        cwd: Path = REPO,
    ) -> None:
        self.name = name
        self.log = logdir / f"{name}.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, env=dict(env), stdout=out, stderr=subprocess.STDOUT, cwd=cwd
            )
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """`kill -9`: no shutdown, no final commit."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
