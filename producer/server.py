"""Runs the producer app under uvicorn (uvloop + httptools) on two listeners until SIGINT/SIGTERM."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
from types import FrameType

import prometheus_client
import uvicorn

from producer.app import create_app
from producer.jsonlog import configure_logging
from producer.settings import ProducerSettings

log = logging.getLogger("producer")

# uvicorn's own exit status when the lifespan startup fails.
STARTUP_FAILURE = 3


class ProducerServer(uvicorn.Server):
    """uvicorn's server; a finished graceful stop on SIGTERM is a clean exit."""

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


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port but not listening yet.

    A taken port fails here, before the lifespan waits for Kafka; until uvicorn listens on it
    (after the lifespan started), connections are refused rather than left hanging.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def listeners(settings: ProducerSettings) -> list[socket.socket]:
    """The public (webhook) socket and the admin socket, in that order."""
    public = bind(settings.http_host, settings.http_port)
    try:
        return [public, bind(settings.admin_host, settings.admin_port)]
    except OSError:
        public.close()
        raise


def serve(settings: ProducerSettings) -> None:
    """Serve until a signal: stop accepting, finish in-flight requests, flush Kafka, return.

    Both listeners belong to one server: one event loop, one lifespan (one Kafka client), one
    graceful shutdown. Raises SystemExit(3) if the app could not start (Kafka unreachable,
    topics unusable) or a port is taken.
    """
    # `_created` series double every counter's exposition and serve no dashboard or alert.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in the library
    listener = configure_logging(settings.log_level)
    try:
        try:
            sockets = listeners(settings)
        except OSError as exc:
            log.error("cannot bind the listeners: %s", exc)
            raise SystemExit(STARTUP_FAILURE) from exc
        server = ProducerServer(server_config(settings))
        try:
            server.run(sockets=sockets)
        finally:
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.close()
        if not server.started:
            raise SystemExit(STARTUP_FAILURE)
    finally:
        listener.stop()
