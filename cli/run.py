"""`sessionflow run`: the producer, one worker (and the enricher when configured) as children."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

from pydantic import Field

from cli import devsecret
from cli.errors import CliError
from sessionflow.settings import KafkaSettings, Port

_POLL_S = 0.2
_PR_SET_PDEATHSIG = 1


class RunSettings(KafkaSettings):
    """What `run` reads itself; the children read their own settings from the same variables."""

    http_port: Port = 8080
    admin_port: Port = 8081
    worker_port: Port = 6066
    enricher_port: Port = 6067
    # A cold worker (RocksDB open, first rebalance, topic creation) takes a while on a laptop.
    run_ready_timeout_seconds: float = Field(default=120.0, gt=0)
    # Longer than the producer's drain and the worker's last commit, shorter than patience.
    run_stop_timeout_seconds: float = Field(default=30.0, gt=0)


class RunError(CliError, RuntimeError):
    """A child did not start or died."""


@dataclass
class Child:
    name: str
    ready_url: str
    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid


# The enricher starts only when the Agntix API is configured: producer and worker never need it.
ENRICHER_URL_VAR = "AGNTIX_API_URL"
ENRICHER_CREDENTIAL_VARS = ("AGNTIX_API_KEY", "AGNTIX_API_TOKEN")


def enricher_configured(environ: Mapping[str, str]) -> bool:
    """True when the environment names the API and a credential (the enricher checks the rest)."""
    return bool(environ.get(ENRICHER_URL_VAR, "").strip()) and any(
        environ.get(name, "").strip() for name in ENRICHER_CREDENTIAL_VARS
    )


def banner(settings: RunSettings, secret_note: str, *, enricher: bool = False) -> str:
    producer = f"http://127.0.0.1:{settings.http_port}"
    admin = f"http://127.0.0.1:{settings.admin_port}"
    worker = f"http://127.0.0.1:{settings.worker_port}"
    if enricher:
        transcripts = (
            f"enricher metrics http://127.0.0.1:{settings.enricher_port}/metrics; "
            ".venv/bin/sessionflow tail transcripts --from-beginning"
        )
    else:
        transcripts = (
            "not fetched: set AGNTIX_API_URL and AGNTIX_API_KEY (or AGNTIX_API_TOKEN) "
            "to start the enricher"
        )
    return (
        "\n"
        "sessionflow is running (Ctrl-C stops the producer and the worker)\n"
        f"  webhook URL      {producer}/webhooks/agntix\n"
        f"  metrics          {admin}/metrics (producer)   {worker}/metrics (worker)\n"
        f"  secrets          {secret_note}\n"
        "  send traffic     .venv/bin/sessionflow send --sessions 1000"
        + (
            f" --url {producer}/webhooks/agntix"
            if settings.http_port != RunSettings.model_fields["http_port"].default
            else ""
        )
        + "\n"
        "  read the output  .venv/bin/sessionflow tail completed --from-beginning\n"
        f"  transcripts      {transcripts}\n"
        "\n"
    )


def child_environ(environ: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """The children's environment, with the webhook secrets filled in, and a note saying whence."""
    env = dict(environ)
    if env.get(devsecret.ENV_VAR, "").strip():
        return env, f"from {devsecret.ENV_VAR}"
    existed = devsecret.DEV_SECRETS_FILE.exists()
    secrets = devsecret.resolve_secrets(environ=env, create=True)
    env[devsecret.ENV_VAR] = ",".join(secrets)
    verb = "using the" if existed else "created a new"
    return env, (
        f"{verb} development secret in {devsecret.DEV_SECRETS_FILE} "
        f"(git-ignored; `sessionflow send` reads it too; set {devsecret.ENV_VAR} to override)"
    )


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when `run` itself dies, even by SIGKILL (Linux)."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(libc_name, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def start_child(name: str, command: str, ready_url: str, env: Mapping[str, str]) -> Child:
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "cli", command],
        env=dict(env),
        # Its own process group: a terminal's Ctrl-C reaches only `run`, which stops the
        # children in order, instead of every process receiving SIGINT at once.
        process_group=0,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    return Child(name, ready_url, proc)


def is_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback http
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def stop_children(children: Sequence[Child], timeout_s: float) -> dict[str, int]:
    """SIGTERM to every live child, wait up to the deadline, then SIGKILL; exit codes by name."""
    for child in children:
        if child.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    codes: dict[str, int] = {}
    for child in children:
        try:
            codes[child.name] = child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            sys.stderr.write(f"sessionflow run: {child.name} did not stop in time; killing it\n")
            child.proc.kill()
            codes[child.name] = child.proc.wait()
    return codes


class _Stop:
    """Set by SIGINT/SIGTERM; the main loop notices it within one poll."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.signal = signum


def supervise(settings: RunSettings, environ: Mapping[str, str]) -> int:
    env, secret_note = child_environ(environ)
    sys.stderr.write(f"sessionflow run: webhook secrets: {secret_note}\n")
    stop = _Stop()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    children: list[Child] = []
    try:
        children.append(
            start_child(
                "producer", "producer", f"http://127.0.0.1:{settings.admin_port}/readyz", env
            )
        )
        children.append(
            start_child("worker", "worker", f"http://127.0.0.1:{settings.worker_port}/readyz", env)
        )
        with_enricher = enricher_configured(env)
        if with_enricher:
            # /healthz: a refused API key must not stop the producer and the worker; the
            # enricher says so in its log and its metrics.
            children.append(
                start_child(
                    "enricher",
                    "enricher",
                    f"http://127.0.0.1:{settings.enricher_port}/healthz",
                    env,
                )
            )
        sys.stderr.write(
            "sessionflow run: started "
            + ", ".join(f"{c.name} (pid {c.pid})" for c in children)
            + "; waiting until they are ready\n"
        )
        ready: set[str] = set()
        deadline = time.monotonic() + settings.run_ready_timeout_seconds
        while stop.signal is None:
            dead = [c for c in children if c.proc.poll() is not None]
            if dead:
                names = ", ".join(f"{c.name} (exit {c.proc.returncode})" for c in dead)
                sys.stderr.write(f"sessionflow run: {names} stopped; stopping the rest\n")
                stop_children(children, settings.run_stop_timeout_seconds)
                return 1
            if len(ready) < len(children):
                ready |= {c.name for c in children if c.name not in ready and is_ready(c.ready_url)}
                if len(ready) == len(children):
                    sys.stdout.write(banner(settings, secret_note, enricher=with_enricher))
                    sys.stdout.flush()
                elif time.monotonic() > deadline:
                    waiting = ", ".join(c.name for c in children if c.name not in ready)
                    sys.stderr.write(
                        f"sessionflow run: {waiting} not ready after "
                        f"{settings.run_ready_timeout_seconds:.0f} s; stopping\n"
                    )
                    stop_children(children, settings.run_stop_timeout_seconds)
                    return 1
            time.sleep(_POLL_S)
        sys.stderr.write(
            f"sessionflow run: {signal.Signals(stop.signal).name}: stopping "
            + ", ".join(c.name for c in children)
            + "\n"
        )
        codes = stop_children(children, settings.run_stop_timeout_seconds)
        sys.stderr.write(
            "sessionflow run: stopped ("
            + ", ".join(f"{name} exit {code}" for name, code in codes.items())
            + ")\n"
        )
        return 0
    finally:
        # Whatever went wrong above, nothing we started outlives us.
        if any(c.proc.poll() is None for c in children):
            stop_children(children, settings.run_stop_timeout_seconds)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run(_: argparse.Namespace) -> int:
    try:
        return supervise(RunSettings(), os.environ)
    except devsecret.DevSecretError as exc:
        sys.stderr.write(f"sessionflow run: {exc}\n")
        return 1
