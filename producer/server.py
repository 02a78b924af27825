"""Runs the producer app under uvicorn (uvloop + httptools) until SIGINT/SIGTERM."""

from __future__ import annotations

import signal
from types import FrameType

import prometheus_client
import uvicorn

from producer.app import create_app
from producer.jsonlog import configure_logging
from producer.settings import ProducerSettings

# uvicorn's own exit status when the lifespan startup fails.
STARTUP_FAILURE = 3


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn records the signal and re-raises it after a graceful stop, so the process
        # would die "by SIGTERM"; a finished graceful stop is a clean exit (status 0) here.
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True


def server_config(settings: ProducerSettings) -> uvicorn.Config:
    """uvicorn settings: our JSON logs replace its access log; shutdown waits for in-flight work."""
    return uvicorn.Config(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        # Above the sender's 15 s, so an in-flight request always ends before we exit.
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
        timeout_keep_alive=30,
    )


def serve(settings: ProducerSettings) -> None:
    """Serve until a signal: stop accepting, finish in-flight requests, flush Kafka, return.

    Raises SystemExit(3) if the app could not start (Kafka unreachable, topics unusable).
    """
    # `_created` series double every counter's exposition and serve no dashboard or alert.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in the library
    listener = configure_logging(settings.log_level)
    try:
        server = _Server(server_config(settings))
        server.run()
        if not server.started:
            raise SystemExit(STARTUP_FAILURE)
    finally:
        listener.stop()
