"""The sender against a local receiver that verifies every request with the official svix library."""

from __future__ import annotations

import argparse
import io
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
from svix.webhooks import Webhook, WebhookVerificationError

from sessionflow import devsecret, send, traffic
from sessionflow.signing import new_secret

# (message id, attempt number for that message id) -> (status, extra response headers)
Behaviour = Callable[[str, int], tuple[int, dict[str, str]]]
SECRET_OLD = new_secret()
SECRET_NEW = new_secret()


def always_ok(_msg_id: str, _attempt: int) -> tuple[int, dict[str, str]]:
    return 200, {}


class Receiver:
    """A tiny webhook endpoint: verifies, counts, and answers what `behaviour` says."""

    def __init__(self, secrets: list[str], behaviour: Behaviour, delay_s: float = 0.0) -> None:
        self.verifiers = [Webhook(s) for s in secrets]
        self.behaviour = behaviour
        self.delay_s = delay_s
        self.lock = threading.Lock()
        self.attempts: Counter[str] = Counter()
        self.bodies: dict[str, bytes] = {}
        self.families: Counter[str] = Counter()
        self.bad_signatures = 0
        self.inflight = 0
        self.max_inflight = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/agntix"

    def _verified(self, body: bytes, headers: dict[str, str]) -> bool:
        for verifier in self.verifiers:
            try:
                verifier.verify(body, headers)
            except WebhookVerificationError:
                continue
            return True
        return False

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the sender's pool expects

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    receiver.inflight += 1
                    receiver.max_inflight = max(receiver.max_inflight, receiver.inflight)
                try:
                    if receiver.delay_s:
                        time.sleep(receiver.delay_s)
                    status, extra = self._decide(body, headers)
                finally:
                    with receiver.lock:
                        receiver.inflight -= 1
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _decide(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
                if not receiver._verified(body, headers):
                    with receiver.lock:
                        receiver.bad_signatures += 1
                    return 401, {}
                family = "svix" if "svix-id" in headers else "webhook"
                msg_id = headers[f"{family}-id"]
                with receiver.lock:
                    receiver.families[family] += 1
                    receiver.attempts[msg_id] += 1
                    receiver.bodies[msg_id] = body
                    attempt = receiver.attempts[msg_id]
                return receiver.behaviour(msg_id, attempt)

        return Handler


@pytest.fixture
def serve() -> Iterator[Callable[..., Receiver]]:
    started: list[tuple[Receiver, threading.Thread]] = []

    def start(
        secrets: list[str], behaviour: Behaviour = always_ok, delay_s: float = 0.0
    ) -> Receiver:
        receiver = Receiver(secrets, behaviour, delay_s)
        thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
        thread.start()
        started.append((receiver, thread))
        return receiver

    try:
        yield start
    finally:
        for receiver, thread in started:
            receiver.server.shutdown()
            receiver.server.server_close()
            thread.join(timeout=5)


def make_plan(sessions: int = 20, **shares: float) -> traffic.Plan:
    defaults = {
        "retry_share": 0.0,
        "resend_share": 0.0,
        "reorder_share": 0.2,
        "half_only_share": 0.0,
        "planned_share": 0.0,
    }
    return traffic.plan(sessions, seed=11, now=datetime.now(UTC), **{**defaults, **shares})


async def test_every_request_verifies_with_svix_in_both_families_during_rotation(
    serve: Callable[..., Receiver],
) -> None:
    # The receiver knows only the new secret: one of the two signatures must match it.
    receiver = serve([SECRET_NEW])
    plan = make_plan(30, retry_share=0.1, resend_share=0.1, half_only_share=0.1, planned_share=0.1)
    report = await send.deliver(
        plan, receiver.url, [SECRET_OLD, SECRET_NEW], concurrency=8, header_family="mixed"
    )
    assert receiver.bad_signatures == 0
    assert report.ok
    assert report.requests == len(plan.deliveries) == receiver.attempts.total()
    assert report.status_counts == Counter({"200": len(plan.deliveries)})
    assert receiver.families["svix"] > 0
    assert receiver.families["webhook"] > 0
    for d in plan.deliveries:
        assert receiver.bodies[d.message_id] == d.body  # the exact bytes, never re-serialised
    complete, incomplete, planned = report.expected()
    assert complete == plan.expectations.complete
    assert incomplete == dict(plan.expectations.incomplete)
    assert planned == plan.expectations.planned_events
    p50, p99 = report.latency_s(0.5), report.latency_s(0.99)
    assert p50 is not None
    assert p99 is not None
    assert 0 < p50 <= p99


async def test_a_wrong_secret_is_rejected_and_fails_the_run(serve: Callable[..., Receiver]) -> None:
    receiver = serve([SECRET_NEW])
    plan = make_plan(2)
    report = await send.deliver(
        plan, receiver.url, [SECRET_OLD], max_attempts=2, retry_base_s=0.01, retry_cap_s=0.05
    )
    assert receiver.bad_signatures == 2 * len(plan.deliveries)
    assert report.status_counts == Counter({"401": 2 * len(plan.deliveries)})
    assert not report.ok
    assert report.failed_message_ids == {d.message_id for d in plan.deliveries}


async def test_non_2xx_is_retried_under_the_same_message_id(serve: Callable[..., Receiver]) -> None:
    def flaky(_msg_id: str, attempt: int) -> tuple[int, dict[str, str]]:
        return (503, {"Retry-After": "0"}) if attempt <= 2 else (202, {})

    receiver = serve([SECRET_NEW], flaky)
    plan = make_plan(10)
    n = len(plan.deliveries)
    report = await send.deliver(
        plan, receiver.url, [SECRET_NEW], concurrency=4, retry_base_s=0.01, retry_cap_s=0.05
    )
    assert report.ok
    assert receiver.bad_signatures == 0  # each retry re-signed and still valid
    assert receiver.attempts == Counter({d.message_id: 3 for d in plan.deliveries})
    assert report.requests == 3 * n
    assert report.retries == 2 * n
    assert report.status_counts == Counter({"503": 2 * n, "202": n})
    assert report.delivered_message_ids == {d.message_id for d in plan.deliveries}


async def test_an_event_that_never_gets_a_2xx_is_a_failure(serve: Callable[..., Receiver]) -> None:
    plan = make_plan(10, retry_share=0.2)
    victim = next(d for d in plan.deliveries if d.event_type == traffic.SESSION_ENDED)
    assert victim.session_id is not None

    def refuse_victim(msg_id: str, _attempt: int) -> tuple[int, dict[str, str]]:
        return (500, {}) if msg_id == victim.message_id else (200, {})

    receiver = serve([SECRET_NEW], refuse_victim)
    report = await send.deliver(
        plan, receiver.url, [SECRET_NEW], max_attempts=3, retry_base_s=0.01, retry_cap_s=0.05
    )
    copies = sum(1 for d in plan.deliveries if d.message_id == victim.message_id)
    assert receiver.attempts[victim.message_id] == 3 * copies
    assert not report.ok
    assert report.failed_message_ids == {victim.message_id}
    complete, incomplete, _ = report.expected()
    assert complete == plan.expectations.complete - {victim.session_id}
    assert incomplete == {victim.session_id: traffic.IncompleteReason.CREATED_WITHOUT_ENDED}
    summary = report.summary()
    assert summary["ok"] is False
    assert summary["failures"] == 1
    assert summary["failed_message_ids"] == [victim.message_id]


async def test_connection_errors_are_retried_then_reported() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    plan = make_plan(2)
    report = await send.deliver(
        plan,
        f"http://127.0.0.1:{port}/webhooks/agntix",
        [SECRET_NEW],
        max_attempts=2,
        retry_base_s=0.01,
        retry_cap_s=0.05,
    )
    assert report.status_counts == Counter({"connection_error": 2 * len(plan.deliveries)})
    assert report.retries == len(plan.deliveries)
    assert not report.ok
    assert report.latency_s(0.5) is None


async def test_retry_after_is_honoured(serve: Callable[..., Receiver]) -> None:
    def once(_msg_id: str, attempt: int) -> tuple[int, dict[str, str]]:
        return (503, {"Retry-After": "0.3"}) if attempt == 1 else (200, {})

    receiver = serve([SECRET_NEW], once)
    plan = make_plan(1, reorder_share=0.0)
    started = time.monotonic()
    report = await send.deliver(
        plan, receiver.url, [SECRET_NEW], retry_base_s=0.001, retry_cap_s=5.0
    )
    assert report.ok
    assert report.retries == len(plan.deliveries)
    assert time.monotonic() - started >= 0.3


async def test_concurrency_bounds_requests_in_flight(serve: Callable[..., Receiver]) -> None:
    receiver = serve([SECRET_NEW], delay_s=0.05)
    plan = make_plan(12)
    report = await send.deliver(plan, receiver.url, [SECRET_NEW], concurrency=3)
    assert report.ok
    assert 2 <= receiver.max_inflight <= 3


async def test_rate_paces_the_requests(serve: Callable[..., Receiver]) -> None:
    receiver = serve([SECRET_NEW])
    plan = make_plan(15)  # 30 deliveries
    started = time.monotonic()
    report = await send.deliver(plan, receiver.url, [SECRET_NEW], concurrency=16, rate=100.0)
    elapsed = time.monotonic() - started
    assert report.ok
    # 30 requests at 100/s with a 50 ms burst allowance: at least 0.25 s.
    assert elapsed >= 0.24
    assert report.requests / report.elapsed_s <= 130


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    import random

    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (8, 10.0), (30, 10.0)]:
        delays = [send.backoff_s(attempt, base_s=0.5, cap_s=10.0, rng=rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


def test_plain_progress_writes_periodic_lines() -> None:
    out = io.StringIO()
    progress = send.PlainProgress(out, every_s=0.0)
    progress.update(send.Snapshot(done=5, total=10, requests=6, ok=5, retries=1, failed=0))
    progress.update(send.Snapshot(done=10, total=10, requests=11, ok=10, retries=1, failed=0))
    progress.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "5/10" in lines[0]
    assert "retries 1" in lines[0]
    assert "10/10" in lines[1]
    assert "100.0%" in lines[1]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sessionflow send")
    send.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_run_succeeds_and_writes_the_json_summary(
    serve: Callable[..., Receiver],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(devsecret.ENV_VAR, f"{SECRET_OLD},{SECRET_NEW}")
    receiver = serve([SECRET_OLD])
    summary_path = tmp_path / "summary.json"
    args = parse(
        [
            "--sessions",
            "20",
            "--url",
            receiver.url,
            "--seed",
            "5",
            "--concurrency",
            "4",
            "--half-only-share",
            "0.1",
            "--header-family",
            "webhook",
            "--no-progress",
            "--json-summary",
            str(summary_path),
        ]
    )
    assert send.run(args) == 0
    out = capsys.readouterr().out
    assert "p50" in out
    assert "p99" in out
    assert "18 completed sessions, 2 incomplete" in out
    summary = orjson.loads(summary_path.read_bytes())
    assert summary["ok"] is True
    assert summary["failures"] == 0
    assert summary["expected"]["completed"] == 18
    assert len(summary["expected"]["complete_session_ids"]) == 18
    assert set(summary["expected"]["incomplete_sessions"].values()) <= {
        "created_without_ended",
        "ended_without_created",
    }
    assert set(summary["delivered_message_ids"]) == set(receiver.attempts)
    assert summary["parameters"]["seed"] == 5
    assert receiver.families == Counter({"webhook": summary["requests"]})


def test_cli_run_exits_non_zero_when_an_event_never_gets_a_2xx(
    serve: Callable[..., Receiver],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(devsecret.ENV_VAR, SECRET_NEW)
    receiver = serve([SECRET_NEW], lambda _m, _a: (500, {}))
    args = parse(
        [
            "--sessions",
            "2",
            "--url",
            receiver.url,
            "--max-attempts",
            "2",
            "--retry-base-seconds",
            "0.01",
            "--no-progress",
        ]
    )
    assert send.run(args) == 1
    assert "never got a 2xx" in capsys.readouterr().out


def test_cli_run_without_any_secret_explains_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(devsecret.ENV_VAR, raising=False)
    monkeypatch.setattr(devsecret, "DEV_SECRETS_FILE", tmp_path / "missing")
    assert send.run(parse(["--sessions", "1", "--no-progress"])) == 2
    assert "SESSIONFLOW_WEBHOOK_SECRETS" in capsys.readouterr().err


def test_cli_uses_the_dev_secret_file_when_env_is_unset(
    serve: Callable[..., Receiver], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(devsecret.ENV_VAR, raising=False)
    path = tmp_path / ".dev-secrets"
    monkeypatch.setattr(devsecret, "DEV_SECRETS_FILE", path)
    receiver = serve([devsecret.load_or_create(path)])
    assert send.run(parse(["--sessions", "3", "--url", receiver.url, "--no-progress"])) == 0
    assert receiver.bad_signatures == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["--sessions", "0"],
        ["--sessions", "1", "--retry-share", "1.5"],
        ["--sessions", "1", "--rate", "-3"],
        ["--sessions", "1", "--header-family", "other"],
    ],
)
def test_cli_refuses_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse(argv)
