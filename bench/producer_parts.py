"""What one accepted webhook costs the producer, part by part (CPU microseconds per request).

In-process and single-threaded except the Kafka part: signature check, envelope parse, record
headers, metrics, response building, the app's whole webhook decision with a publisher that acks
at once (no HTTP, no Kafka), the public listener's whole path over in-process connections (no
socket, no Kafka: acknowledgements at the next hand-over, as under load), and the Kafka client's
send path alone (64 concurrent senders awaiting acks=all against the broker; CPU of every thread
of this process, librdkafka's included). The HTTP part is the bare-endpoint server under load,
which `--http` measures in a child process.

The in-process figures are CPU time on one core, so they vary less with a busy machine than the
end-to-end ones of bench.producer_ab: on a day when the same tree differed by 24% between two
end-to-end variants, the listener figure told a 2-4 µs change apart (producer-experiments.md,
section 25).

    python -m bench.producer_parts [--kafka] [--http] [--rounds 5]

Prints one JSON object; each figure is the median of `rounds` with its min and max.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import orjson
import uvloop

from bench.http_stack import ASGI_LIFESPAN, run_wrk, uvicorn_command
from bench.proc import cpu_seconds, free_port, wait_port
from bench.webhooks import SECRET, ended_requests
from producer.app import ProducerApp, _status, create_app
from producer.envelope import Envelope, parse_envelope
from producer.http1 import Answer
from producer.metrics import ProducerMetrics
from producer.publisher import Delivered, KafkaPublisher
from producer.settings import ProducerSettings
from producer.verify import WebhookVerifier
from sessionflow.raw_record import RecordHeaders, format_received_at, raw_headers
from sessionflow.settings import KafkaSettings
from sessionflow.signing import decode_secret
from sessionflow.topics import Topics, ensure_topics

Request = tuple[list[tuple[bytes, bytes]], bytes]
T = TypeVar("T")


def parse(raw: bytes) -> Request:
    head, body = raw.split(b"\r\n\r\n", 1)
    headers = []
    for line in head.split(b"\r\n")[1:]:
        name, value = line.split(b":", 1)
        headers.append((name.strip().lower(), value.strip()))
    return headers, body


def per_call_us(fn: Callable[[T], object], items: list[T], repeat: int) -> float:
    started = time.process_time()
    for _ in range(repeat):
        for item in items:
            fn(item)
    return 1e6 * (time.process_time() - started) / (repeat * len(items))


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


class InstantPublisher:
    """Acks within the call, which Kafka never does: the handler's own cost, no loop turn."""

    ready = True
    clients_replaced: Mapping[str, int] = MappingProxyType({})

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def publish_raw(
        self, key: bytes | None, body: bytes, headers: RecordHeaders, done: Delivered
    ) -> None:
        done(None)

    def publish_dlq(
        self, key: bytes | None, body: bytes, headers: RecordHeaders, done: Delivered
    ) -> None:
        done(None)


def handler_us(app: ProducerApp, requests: list[Request], repeat: int) -> float:
    """The app's webhook decision (verify, parse, publish, count), as the public listener calls
    it once a request is whole: no HTTP."""
    whole = [(dict(headers), body) for headers, body in requests]
    answers: list[Answer] = []
    started = time.process_time()
    for _ in range(repeat):
        for headers, body in whole:
            app.webhook(headers, body, time.perf_counter(), answers.append)
        answers.clear()
    return 1e6 * (time.process_time() - started) / (repeat * len(requests))


class NextHandOverPublisher(InstantPublisher):
    """Acknowledges each record at the next hand-over, on the loop: under load the reports of
    earlier records are served when the next one is handed to librdkafka (producer/delivery.py)."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._waiting: list[Delivered] = []

    def publish_raw(
        self, key: bytes | None, body: bytes, headers: RecordHeaders, done: Delivered
    ) -> None:
        self.report()
        self._waiting.append(done)

    def publish_dlq(
        self, key: bytes | None, body: bytes, headers: RecordHeaders, done: Delivered
    ) -> None:
        self.publish_raw(key, body, headers, done)

    def report(self) -> None:
        """Acknowledge every record handed over so far."""
        waiting, self._waiting = self._waiting, []
        for done in waiting:
            self._loop.call_soon(done, None)


class Tally:
    """The answers written to every connection; each must be a 202."""

    def __init__(self) -> None:
        self.answers = 0
        self.refused: bytes | None = None
        self._target = 0
        self._reached: asyncio.Future[None] | None = None

    def answered(self, data: bytes) -> None:
        self.answers += 1
        if self.refused is None and not data.startswith(b"HTTP/1.1 202"):
            self.refused = data[:60]
        reached = self._reached
        settled = self.refused is not None or self.answers >= self._target
        if reached is not None and not reached.done() and settled:
            reached.set_result(None)

    async def reach(self, target: int) -> None:
        """Until `target` answers in all; an error as soon as one was not a 202."""
        if self.refused is None and self.answers < target:
            self._target = target
            self._reached = asyncio.get_running_loop().create_future()
            await self._reached
        if self.refused is not None:
            raise RuntimeError(f"a webhook was not accepted: {self.refused!r}")


class FarEnd(asyncio.Transport):
    """A connection's client side, in process: what the listener writes goes to the tally."""

    def __init__(self, tally: Tally) -> None:
        super().__init__()
        self._tally = tally

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._tally.answered(bytes(data))

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None

    def close(self) -> None:
        raise RuntimeError("the listener closed a connection")


async def listener_us(raw: list[bytes], repeat: int, connections: int = 64) -> float:
    """The public listener's whole cost per webhook, no socket and no Kafka: parse, route,
    verify, envelope, hand-over, the answer from the acknowledgement's callback, the write.
    Each of `connections` gets one whole request at a time, as under closed-loop load."""
    publisher = NextHandOverPublisher()
    app = create_app(ProducerSettings(webhook_secrets=SECRET), publisher)
    tally = Tally()
    protocols = []
    for _ in range(connections):
        protocol = app.public.connection()
        protocol.connection_made(FarEnd(tally))
        protocols.append(protocol)
    total = repeat * len(raw)
    sent = 0
    started = time.process_time()
    while sent < total:
        for protocol in protocols:
            protocol.data_received(raw[sent % len(raw)])
            sent += 1
        publisher.report()
        await tally.reach(sent)
    spent = time.process_time() - started
    for protocol in protocols:
        protocol.connection_lost(None)
    return 1e6 * spent / sent


def in_process(raw: list[bytes], requests: list[Request], repeat: int) -> dict[str, float]:
    settings = ProducerSettings(webhook_secrets=SECRET)
    verifier = WebhookVerifier([decode_secret(SECRET)])
    metrics = ProducerMetrics()
    bodies = [b for _, b in requests]
    signed = [
        (body, h[b"svix-id"], h[b"svix-timestamp"], h[b"svix-signature"])
        for h, body in ((dict(headers), body) for headers, body in requests)
    ]
    envs = [parse_envelope(b) for b in bodies]
    out: dict[str, float] = {}
    out["verify"] = per_call_us(lambda r: verifier.verify(*r), signed, repeat)
    out["envelope_parse"] = per_call_us(parse_envelope, bodies, repeat)
    out["record_headers"] = per_call_us(
        lambda e: raw_headers(b"msg_x", e.event_type, format_received_at(time.time())), envs, repeat
    )

    def observe(_: object) -> None:
        metrics.count("session.ended", "accepted")
        metrics.body_bytes.observe(2000)
        metrics.publish_seconds.observe(0.004)
        metrics.request_seconds.observe(0.005)

    out["metrics"] = per_call_us(observe, envs, repeat)
    out["response_body"] = per_call_us(lambda _: _status("accepted", b"msg_x"), envs, repeat)
    out["log_line_at_info"] = log_line_us(len(requests) * repeat)
    app = create_app(settings, InstantPublisher())
    out["handler_total_no_http_no_kafka"] = handler_us(app, requests, repeat)
    # uvloop, as the server runs it.
    out["listener_total_no_socket_no_kafka"] = uvloop.run(listener_us(raw, repeat))
    return out


def log_line_us(count: int) -> float:
    """One request's JSON log line at INFO (the default level; the benches run at WARNING):
    the record on the loop plus its formatting and write in the listener thread, to /dev/null."""
    import logging
    import sys as _sys

    from sessionflow.logs import configure_logging

    log = logging.getLogger("producer.requests")
    saved = _sys.stderr
    with Path(os.devnull).open("w") as null:
        _sys.stderr = null
        listener = configure_logging("INFO")
        try:
            started = time.process_time()
            for i in range(count):
                fields = {
                    "message_id": "msg_2dQp7Hk3",
                    "event_type": "session.ended",
                    "outcome": "accepted",
                    "status": 202,
                    "latency_ms": 4.5 + i % 3,
                }
                log.info("webhook", extra={"fields": fields})
            listener.stop()  # waits until every queued line is written
            return 1e6 * (time.process_time() - started) / count
        finally:
            _sys.stderr = saved
            logging.getLogger().handlers.clear()
            logging.getLogger().setLevel(logging.WARNING)


async def kafka_send_path(
    client: str, bootstrap: str, requests: list[Request], total: int, concurrency: int
) -> dict[str, float]:
    namespace = f"parts-{uuid.uuid4().hex[:8]}."
    settings = ProducerSettings(
        webhook_secrets=SECRET,
        kafka_bootstrap_servers=bootstrap,
        topic_namespace=namespace,
        partitions=12,
    )
    base = KafkaSettings(
        kafka_bootstrap_servers=bootstrap, topic_namespace=namespace, partitions=12
    )
    await ensure_topics(base, Topics.for_settings(base).specs(base))
    publisher = make_publisher(client, settings)
    await publisher.start()
    envs = [(parse_envelope(body), body) for _, body in requests]
    received_at = format_received_at(time.time())
    try:
        # Warm-up: connections, metadata, first batches.
        await send_all(publisher, envs, received_at, 200, 64)
        cpu0, loop0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
        await send_all(publisher, envs, received_at, total, concurrency)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        loop_cpu = time.thread_time() - loop0
    finally:
        await publisher.stop()
    return {
        "cpu_us_per_record": round(1e6 * cpu / total, 2),
        "loop_thread_cpu_us_per_record": round(1e6 * loop_cpu / total, 2),
        "records_per_s": round(total / wall),
    }


async def send_all(
    publisher: Any,
    envs: list[tuple[Envelope, bytes]],
    received_at: str,
    total: int,
    concurrency: int,
) -> None:
    """`total` records, `concurrency` in flight: each acknowledgement hands over the next, as
    the producer's requests do (no task per record)."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    counter = iter(range(total))
    senders = concurrency

    def send_next(error: Exception | None) -> None:
        nonlocal senders
        if error is not None:
            if not finished.done():
                finished.set_exception(error)
            return
        i = next(counter, None)
        if i is None:
            senders -= 1
            if senders == 0:
                finished.set_result(None)
            return
        env, body = envs[i % len(envs)]
        headers = raw_headers(b"msg", env.event_type, received_at)
        publisher.publish_raw(env.key, body, headers, send_next)

    for _ in range(concurrency):
        send_next(None)
    await finished


def make_publisher(client: str, settings: ProducerSettings) -> Any:
    """The working tree's publisher; PYTHONPATH may point at another tree's (an older client)."""
    del client
    return KafkaPublisher(settings)


BARE_APP = (
    ASGI_LIFESPAN
    + """    more = True
    while more:
        m = await receive()
        more = m.get("more_body", False)
    await send({"type": "http.response.start", "status": 202,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"15")]})
    await send({"type": "http.response.body", "body": b'{"status":"ok"}'})
"""
)


def http_cost(raw: list[bytes], seconds: int, connections: int) -> dict[str, float]:
    """The bare endpoint on the producer's server stack under wrk: CPU per request."""
    import subprocess

    from bench.webhooks import wrk_script

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "bare.py").write_text(BARE_APP)
        script = workdir / "r.lua"
        wrk_script(script, raw)
        port = free_port()
        server = subprocess.Popen(uvicorn_command("bare:app", port), cwd=workdir)
        try:
            wait_port(port)
            run_wrk(connections, 2, script, f"http://127.0.0.1:{port}/")  # warm-up
            cpu0 = cpu_seconds(server.pid) or 0.0
            out = run_wrk(connections, seconds, script, f"http://127.0.0.1:{port}/")
            cpu = (cpu_seconds(server.pid) or 0.0) - cpu0
        finally:
            server.terminate()
            server.wait(10)
    requests = int(out.split(" requests in ")[0].split()[-1])
    return {"cpu_us_per_request": round(1e6 * cpu / requests, 2), "rps": round(requests / seconds)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--kafka", action="append", default=[], choices=["aiokafka", "confluent"])
    parser.add_argument("--kafka-records", type=int, default=20_000)
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--http-seconds", type=int, default=5)
    args = parser.parse_args()
    raw = ended_requests(1000)
    requests = [parse(r) for r in raw]
    rounds: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, value in in_process(raw, requests, args.repeat).items():
            rounds.setdefault(name, []).append(value)
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
        for client in args.kafka:
            figures = uvloop.run(
                kafka_send_path(client, bootstrap, requests, args.kafka_records, 64)
            )
            rounds.setdefault(f"kafka_{client}_cpu_us", []).append(figures["cpu_us_per_record"])
            rounds.setdefault(f"kafka_{client}_loop_thread_cpu_us", []).append(
                figures["loop_thread_cpu_us_per_record"]
            )
            rounds.setdefault(f"kafka_{client}_records_per_s", []).append(figures["records_per_s"])
        if args.http:
            figures = http_cost(raw, args.http_seconds, 64)
            rounds.setdefault("http_bare_cpu_us", []).append(figures["cpu_us_per_request"])
            rounds.setdefault("http_bare_rps", []).append(figures["rps"])
    result = {
        "unit": "CPU us per request (median of rounds)",
        **{k: spread(v) for k, v in rounds.items()},
    }
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
