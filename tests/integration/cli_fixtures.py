"""Helpers for tests that drive the `sessionflow` command as operators do: real subprocesses."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sessionflow.signing import new_secret
from tests.conftest import TIMEOUT_S
from tests.integration.conftest import free_port, stop_process
from tests.kafka_helpers import Namespace

RUN_BANNER = "sessionflow is running"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli", *args]


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s")


@dataclass
class ServiceEnv(Namespace):
    """The environment one test's producer, worker and tools share (namespace, ports, secret)."""

    partitions: int = 2
    http_port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    worker_port: int = field(default_factory=free_port)
    secret: str = field(default_factory=new_secret)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/webhooks/agntix"

    def environ(self, **extra: str) -> dict[str, str]:
        # The enricher starts only when a test configures the Agntix API itself.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("AGNTIX_")}
        return {
            **inherited,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "SESSIONFLOW_TOPIC_NAMESPACE": self.namespace,
            "SESSIONFLOW_PARTITIONS": str(self.partitions),
            "SESSIONFLOW_HTTP_HOST": "127.0.0.1",
            "SESSIONFLOW_HTTP_PORT": str(self.http_port),
            "SESSIONFLOW_ADMIN_HOST": "127.0.0.1",
            "SESSIONFLOW_ADMIN_PORT": str(self.admin_port),
            "SESSIONFLOW_WORKER_HOST": "127.0.0.1",
            "SESSIONFLOW_WORKER_PORT": str(self.worker_port),
            "SESSIONFLOW_DATA_DIR": str(self.root / "worker"),
            "SESSIONFLOW_WEBHOOK_SECRETS": self.secret,
            "SESSIONFLOW_LOG_LEVEL": "WARNING",
            **extra,
        }

    def run(
        self, *args: str, timeout_s: float = TIMEOUT_S, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        """One `sessionflow` command to completion, with `extra` variables; output captured,
        stdout not a terminal."""
        return subprocess.run(
            cli(*args),
            env=self.environ(**extra),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def send(self, sessions: int, *extra: str) -> dict[str, Any]:
        """`sessionflow send` against this env's producer; its JSON summary."""
        summary = self.root / f"send-{time.monotonic_ns()}.json"
        done = self.run(
            "send",
            "--sessions",
            str(sessions),
            "--url",
            self.url,
            "--no-progress",
            "--json-summary",
            str(summary),
            *extra,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        parsed: dict[str, Any] = orjson.loads(summary.read_bytes())
        return parsed

    def send_and_tail(self, sessions: int, seed: int, which: str) -> tuple[set[str], list[Any]]:
        """`send` the sessions, then `tail WHICH` until each complete one shows, exactly once:
        the complete session ids and the records."""
        summary = self.send(sessions, "--seed", str(seed))
        expected = set(summary["expected"]["complete_session_ids"])
        assert expected
        found: list[Any] = []

        def all_there() -> bool:
            found[:] = self.tail(which)
            return len(found) >= len(expected)

        wait_for(all_there, f"{len(expected)} records in `tail {which}`")
        counts = Counter(str(r["sessionId"]) for r in found)
        assert set(counts) == expected
        assert max(counts.values()) == 1
        return expected, found

    def tail(self, which: str, *extra: str) -> list[Any]:
        """`sessionflow tail WHICH --from-beginning` (non-follow): every record, parsed."""
        done = self.run("tail", which, "--from-beginning", *extra)
        assert done.returncode == 0, done.stderr
        return [orjson.loads(line) for line in done.stdout.splitlines()]


@dataclass
class SecuredEnv(ServiceEnv):
    """A ServiceEnv whose processes and tools all connect with `security` (SESSIONFLOW_KAFKA_*)."""

    security: dict[str, str] = field(default_factory=dict)

    def environ(self, **extra: str) -> dict[str, str]:
        return super().environ(**self.security, **extra)


class Service:
    """A `sessionflow` subprocess with its log in a file (a pipe nobody reads would block it)."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, url: str, timeout_s: float = TIMEOUT_S) -> None:
        def ready() -> bool:
            assert self.alive(), f"exited early:\n{self.log()[-4000:]}"
            try:
                with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_for(ready, f"{url} ready", timeout_s)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = TIMEOUT_S) -> int:
        return stop_process(self.proc, sig, timeout_s)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0) until its parent reaps it; it runs no code any more.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@contextlib.contextmanager
def running(
    env: ServiceEnv, children: set[str], **extra: str
) -> Iterator[tuple[Service, dict[str, int]]]:
    """`sessionflow run`, waited for until its banner, with its children's pids from its log;
    it and its children are killed at the end, whatever happened."""
    service = Service(cli("run"), env.environ(**extra), env.root / "run.log")
    pids: dict[str, int] = {}
    try:

        def banner_shown() -> bool:
            assert service.alive(), f"run exited early:\n{service.log()[-4000:]}"
            return RUN_BANNER in service.log()

        wait_for(banner_shown, "the run banner")
        found = re.findall(r"(producer|worker|enricher) \(pid (\d+)\)", service.log())
        pids.update((name, int(pid)) for name, pid in found)
        assert set(pids) == children, service.log()
        yield service, pids
    finally:
        service.stop(signal.SIGKILL)
        for pid in pids.values():
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def serving_transcripts(
    env: ServiceEnv, api_url: str, api_key: str, seed: int
) -> Iterator[tuple[Service, set[str]]]:
    """`sessionflow run` with the enricher (API at `api_url`), a dozen sessions sent through it,
    each complete one read once from the transcripts and the completed topics (`tail`): the
    service and those session ids. Afterwards the run must stop cleanly on Ctrl-C."""
    enricher = {
        "AGNTIX_API_URL": api_url,
        "AGNTIX_API_KEY": api_key,
        "SESSIONFLOW_ENRICHER_HOST": "127.0.0.1",
        "SESSIONFLOW_ENRICHER_PORT": str(free_port()),
    }
    with running(env, {"producer", "worker", "enricher"}, **enricher) as (service, _):
        expected, _found = env.send_and_tail(12, seed, "transcripts")
        assert {str(r["sessionId"]) for r in env.tail("completed")} == expected
        yield service, expected
        service.proc.send_signal(signal.SIGINT)
        assert service.proc.wait(timeout=TIMEOUT_S) == 0, service.log()[-4000:]
