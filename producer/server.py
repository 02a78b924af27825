"""Runs the producer until SIGINT/SIGTERM: uvicorn (uvloop + httptools) serves the admin listener
and the lifespan, and the lifespan serves the public listener (producer/http1.py) on the same loop."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
from types import FrameType
from typing import Any

import prometheus_client
import uvicorn

from producer.app import ASGIApp, ProducerApp, create_app
from producer.settings import ProducerSettings
from sessionflow.logs import configure_logging

log = logging.getLogger("producer")

# uvicorn's own exit status when the lifespan startup fails.
STARTUP_FAILURE = 3
_SUPERVISE_POLL_S = 0.2


class ProducerServer(uvicorn.Server):
    """uvicorn's server; a finished graceful stop on SIGTERM is a clean exit."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn records the signal and re-raises it after a graceful stop, so the process
        # would die "by SIGTERM"; a finished graceful stop is a clean exit (status 0) here.
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True


def stack_config(app: ASGIApp | str, host: str, port: int, **options: Any) -> uvicorn.Config:
    """The producer's HTTP stack: uvicorn on uvloop and httptools, quiet, no per-request
    middleware. bench/ serves its bare endpoint on it too, so that the two compare like with like
    (uvicorn's own defaults cost the bare endpoint 10-13%, bench/results/producer-experiments.md)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        # Nothing here reads the client address or scheme: skip the per-request middleware.
        proxy_headers=False,
        **options,
    )


def server_config(settings: ProducerSettings) -> uvicorn.Config:
    """uvicorn settings: our JSON logs replace its access log; shutdown waits for in-flight work
    (the admin listener's here, the public listener's in the app's lifespan)."""
    return stack_config(
        create_app(settings),
        settings.http_host,
        settings.http_port,
        # Above the sender's 15 s, so an in-flight request always ends before we exit.
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
        timeout_keep_alive=30,
    )


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to host:port but not listening yet.

    A taken port fails here, before the lifespan waits for Kafka; until uvicorn listens on it
    (after the lifespan started), connections are refused rather than left hanging. With
    `reuse_port`, processes that all set it share the port and the kernel spreads connections.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        # Name the address: with several processes the admin ports are the base port + i, and
        # "address already in use" alone does not say which of them another program holds.
        raise OSError(exc.errno, f"{exc.strerror} ({host}:{port})") from exc
    return sock


def listeners(settings: ProducerSettings, *, reuse_port: bool = False) -> list[socket.socket]:
    """The public (webhook) socket and the admin socket, in that order."""
    public = bind(settings.http_host, settings.http_port, reuse_port=reuse_port)
    try:
        return [public, bind(settings.admin_host, settings.admin_port)]
    except OSError:
        public.close()
        raise


def public_apart(config: uvicorn.Config, sockets: list[socket.socket]) -> list[socket.socket]:
    """Hand the public socket to the app (its lifespan listens on it once Kafka is reachable);
    what is left, the admin socket, is uvicorn's."""
    public, *admin = sockets
    app = config.app
    if not isinstance(app, ProducerApp):
        raise TypeError(f"not the producer's app: {app!r}")
    app.serve_public_on(public)
    return admin


def serve(settings: ProducerSettings) -> None:
    """Serve until a signal: stop accepting, finish in-flight requests, flush Kafka, return.

    Both listeners belong to one server: one event loop, one lifespan (one Kafka client), one
    graceful shutdown. Raises SystemExit(3) if the app could not start (Kafka unreachable,
    topics unusable) or a port is taken. With `http_processes` > 1 this process supervises
    that many such servers sharing the public port instead.
    """
    listener = configure_logging(settings.log_level, settings.log_format)
    try:
        if settings.http_processes == 1:
            _serve_one(settings, reuse_port=False)
        else:
            code = supervise(settings)
            if code:
                raise SystemExit(code)
    finally:
        listener.stop()


def _serve_one(settings: ProducerSettings, *, reuse_port: bool) -> None:
    # `_created` series double every counter's exposition and serve no dashboard or alert.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in the library
    try:
        sockets = listeners(settings, reuse_port=reuse_port)
    except OSError as exc:
        log.error("cannot bind the listeners: %s", exc)
        raise SystemExit(STARTUP_FAILURE) from exc
    config = server_config(settings)
    server = ProducerServer(config)
    try:
        server.run(sockets=public_apart(config, sockets))
    finally:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)


def _child(settings: ProducerSettings, index: int) -> None:
    """One of several processes (a fresh interpreter): the public port shared, its own admin."""
    listener = configure_logging(settings.log_level, settings.log_format)
    try:
        _serve_one(settings.for_process(index), reuse_port=True)
    finally:
        listener.stop()


def supervise(settings: ProducerSettings) -> int:
    """Run `http_processes` servers; forward SIGTERM/SIGINT; if one dies, stop all. Exit code."""
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=_child, args=(settings, i), name=f"producer-{i}")
        for i in range(settings.http_processes)
    ]
    stopping: list[int] = []

    def stop_all(signum: int, _frame: FrameType | None = None) -> None:
        stopping.append(signum)
        for child in children:
            if child.pid is not None and child.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, stop_all) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for child in children:
            child.start()
        log.info(
            "%d producer processes share port %d; admin ports %d-%d",
            len(children),
            settings.http_port,
            settings.admin_port,
            settings.admin_port + len(children) - 1,
        )
        failed = False
        while any(child.is_alive() for child in children):
            for child in children:
                child.join(_SUPERVISE_POLL_S)
            if not stopping and any(child.exitcode is not None for child in children):
                # One ended on its own (startup failure, crash): the set is incomplete, so the
                # whole producer stops and its supervisor (Kubernetes, systemd) restarts it.
                ended = ", ".join(
                    f"{c.name} (exit code {c.exitcode})" for c in children if c.exitcode is not None
                )
                log.error("producer process %s ended; stopping the others", ended)
                failed = True
                stop_all(signal.SIGTERM)
        codes = [child.exitcode for child in children]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    # A child's own failure status (3: it could not start), else 1 for any other failure.
    statuses = [c for c in codes if c]
    if statuses and statuses[0] is not None and statuses[0] > 0:
        return statuses[0]
    return 1 if failed or statuses else 0
