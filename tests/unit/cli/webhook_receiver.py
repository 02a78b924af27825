"""A local webhook endpoint that verifies every request with the official svix library."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from svix.webhooks import Webhook, WebhookVerificationError

from cli import traffic
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


def make_plan(sessions: int = 20, **shares: float) -> traffic.Plan:
    mix = replace(traffic.Mix(reorder_share=0.2), **shares)
    return traffic.plan(sessions, seed=11, now=datetime.now(UTC), mix=mix)
