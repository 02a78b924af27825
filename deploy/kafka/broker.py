"""A local single-node Apache Kafka (KRaft) broker on loopback: fetch, format, start, stop, wipe.

Standard library only: `make kafka-up` runs it before any virtualenv exists. The Kafka
distribution's bin/ scripts do no more than run `kafka.tools.StorageTool` and `kafka.Kafka`
with the jars on the classpath; so do we, with the jars Maven fetches into a cache folder.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
# Brokers started by this process, kept so that they are reaped when stopped (tests run the
# launcher in-process; the command-line launcher leaves its broker running and exits).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
# The listeners every broker has; the secured listener adds its own entry.
PROTOCOL_MAP = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,PROXIED:PLAINTEXT"
# The file in a broker's home naming the process that started it: its pid and start time.
STARTER = "broker.starter"
# The broker's JVM: a small heap and short GC pauses.
JVM = ("-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true")


class _InHome:
    """A file or folder of a broker's home, named once: `log = _InHome("broker.log")`."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, broker: Broker, owner: type[Broker] | None = None) -> Path:
        return broker.home / self.name


@dataclass(frozen=True)
class Broker:
    """One local broker: where its files live and which loopback ports it takes."""

    home: Path
    port: int
    controller_port: int
    cache: Path = REPO / ".cache" / "kafka"
    # The port clients are told to use (a proxy in front of the broker, in tests); 0: its own.
    advertised_port: int = 0
    # A second client listener, (port, advertised port): a proxy in front of it, in tests, cuts
    # off only the clients that bootstrap through it. None: no second listener.
    proxied: tuple[int, int] | None = None
    # A third client listener, secured, on this port (0: none), for tests: SASL (PLAIN, SCRAM-SHA-256)
    # for these (user, password) pairs, TLS with this (PKCS12 keystore, password), or both; TLS
    # requires a client certificate in `secured_clients` (PKCS12, same password) when given. With
    # `secured_acls`, ACLs apply to its users; the plaintext listeners' (ANONYMOUS) are super users.
    secured_port: int = 0
    secured_users: tuple[tuple[str, str], ...] = ()
    secured_tls: tuple[Path, str] | None = None
    secured_clients: Path | None = None
    secured_acls: bool = False
    # What it keeps in its home: the log segments, the generated config, its output, its pid.
    data = _InHome("data")
    config = _InHome("server.properties")
    log = _InHome("broker.log")
    pidfile = _InHome("broker.pid")
    starter = _InHome(STARTER)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def libs(self) -> Path:
        return self.cache / "libs"

    # -- fetch ------------------------------------------------------------------------------
    def fetch(self) -> None:
        """Copy the broker's runtime jars into the cache once; later runs reuse them."""
        pom = HERE / "pom.xml"
        stamp = self.libs / ".pom"
        if stamp.exists() and stamp.read_bytes() == pom.read_bytes():
            return
        if shutil.which("mvn") is None:
            sys.exit(
                "kafka: Maven (mvn) is needed to fetch the broker jars; install it or set KAFKA_BOOTSTRAP_SERVERS"
            )
        print(f"kafka: fetching the broker jars into {self.libs} (once)", flush=True)
        shutil.rmtree(self.libs, ignore_errors=True)
        copy = ["dependency:copy-dependencies", f"-DoutputDirectory={self.libs}"]
        subprocess.run(
            ["mvn", "-q", "-B", "-f", str(pom), *copy, "-DincludeScope=runtime"], check=True
        )
        stamp.write_bytes(pom.read_bytes())

    # -- configure and format -----------------------------------------------------------------
    def write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        extra = extra_advertised = ""
        if self.proxied is not None:
            extra = f",PROXIED://127.0.0.1:{self.proxied[0]}"
            extra_advertised = f",PROXIED://127.0.0.1:{self.proxied[1]}"
        protocols, secured = PROTOCOL_MAP, []
        if self.secured_port:
            extra += f",SECURED://127.0.0.1:{self.secured_port}"
            extra_advertised += f",SECURED://127.0.0.1:{self.secured_port}"
            protocols += f",SECURED:{self.secured_protocol}"
            secured = self._secured_config()
        self.config.write_text(
            "\n".join(
                [
                    "# Written by deploy/kafka/broker.py: one combined broker+controller on loopback.",
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}{extra}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.advertised_port or self.port}{extra_advertised}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"listener.security.protocol.map={protocols}",
                    *secured,
                    f"log.dirs={self.data}",
                    "num.partitions=1",
                    # One node: internal topics and transactions (exactly-once) need replication 1.
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=12",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=12",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    # The project creates its topics with declared partitions and configs.
                    "auto.create.topics.enable=false",
                    # Tests start and stop consumer groups constantly: no initial rebalance delay.
                    "group.initial.rebalance.delay.ms=0",
                    "log.flush.interval.messages=9223372036854775807",
                    "",
                ]
            )
        )

    @property
    def secured_protocol(self) -> str:
        sasl, tls = bool(self.secured_users), self.secured_tls is not None
        return {(True, True): "SASL_SSL", (True, False): "SASL_PLAINTEXT"}.get((sasl, tls), "SSL")

    def _secured_config(self) -> list[str]:
        lines = []
        if self.secured_tls is not None:
            keystore, password = self.secured_tls
            for store, path in (("keystore", keystore), ("truststore", self.secured_clients)):
                if path is not None:
                    lines += [
                        f"listener.name.secured.ssl.{store}.location={path}",
                        f"listener.name.secured.ssl.{store}.password={password}",
                        f"listener.name.secured.ssl.{store}.type=PKCS12",
                    ]
            if self.secured_clients is not None:
                lines.append("listener.name.secured.ssl.client.auth=required")
        if self.secured_users:
            users = " ".join(f'user_{name}="{password}"' for name, password in self.secured_users)
            lines += [
                "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256",
                "listener.name.secured.plain.sasl.jaas.config="
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};",
                "listener.name.secured.scram-sha-256.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            ]
        if self.secured_acls:
            lines += [
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "super.users=User:ANONYMOUS",
            ]
        return lines

    def format_storage(self) -> None:
        if (self.data / "meta.properties").exists():
            return
        scram = [
            arg
            for name, password in self.secured_users
            for arg in ("--add-scram", f"SCRAM-SHA-256=[name={name},password={password}]")
        ]
        storage = ["kafka.tools.StorageTool", "format", "--standalone", "-t", _kafka_uuid()]
        _run_java(self.libs, [*storage, "-c", str(self.config), *scram])

    # -- run --------------------------------------------------------------------------------
    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _alive(pid) else None

    def up(self, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Start the broker unless it runs; return the seconds until it answered a metadata request."""
        started = time.monotonic()
        if self.pid() is None:
            if metadata_ready("127.0.0.1", self.port):
                sys.exit(
                    f"kafka: something else already answers on {self.bootstrap}; stop it or set KAFKA_PORT"
                )
            self.fetch()
            self.write_config()
            self.format_storage()
            log = self.log.open("ab")
            proc = subprocess.Popen(
                [
                    *_java_command(self.libs),
                    *JVM,
                    f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
                    "kafka.Kafka",
                    str(self.config),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            log.close()
            _CHILDREN[proc.pid] = proc
            self.pidfile.write_text(f"{proc.pid}\n")
            self.starter.write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
        self._wait_ready(started, timeout_s)
        return time.monotonic() - started

    def _wait_ready(self, started: float, timeout_s: float) -> None:
        while time.monotonic() - started < timeout_s:
            if self.pid() is None:
                self.pidfile.unlink(missing_ok=True)
                sys.exit(
                    f"kafka: the broker exited during start-up; last lines of {self.log}:\n{self.tail()}"
                )
            if metadata_ready("127.0.0.1", self.port):
                return
            time.sleep(0.2)
        sys.exit(
            f"kafka: no answer on {self.bootstrap} within {timeout_s:.0f}s; last lines of {self.log}:\n{self.tail()}"
        )

    def down(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Stop exactly this broker (SIGTERM, then SIGKILL after a deadline); True if one ran."""
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
        _reap(pid)
        self.pidfile.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """SIGKILL, for fault tests: no clean shutdown, the data stays as the crash left it."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.05)
            _reap(pid)
        self.pidfile.unlink(missing_ok=True)

    def reset(self) -> None:
        self.down()
        shutil.rmtree(self.data, ignore_errors=True)
        self.config.unlink(missing_ok=True)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def metadata_ready(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when a broker answers a Metadata request (v4, all topics) listing at least one broker."""
    client_id = b"sessionflow-launcher"
    correlation_id = 7
    # Request header v1 (api key 3 = Metadata, version 4), then the body: all topics (null array),
    # no auto-creation.
    payload = (
        struct.pack(">hhih", 3, 4, correlation_id, len(client_id))
        + client_id
        + struct.pack(">ib", -1, 0)
    )
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(payload)) + payload)
            size = struct.unpack(">i", _recv_exactly(sock, 4))[0]
            body = _recv_exactly(sock, size)
    except (OSError, struct.error):
        return False
    # Response: correlation id, throttle time, then the brokers array's length.
    got_id, _throttle, brokers = struct.unpack(">iii", body[:12])
    return got_id == correlation_id and brokers > 0


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed")
        buf += chunk
    return bytes(buf)


def _kafka_uuid() -> str:
    """A cluster id as Kafka writes them: 16 random bytes, URL-safe base64 without padding."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _java_command(libs: Path) -> list[str]:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java:
        sys.exit(
            "kafka: Java 17+ is needed for the local broker; install it or set KAFKA_BOOTSTRAP_SERVERS"
        )
    return [java, "-cp", f"{libs}/*"]


def _run_java(libs: Path, args: list[str]) -> None:
    subprocess.run([*_java_command(libs), *args], check=True, stdout=subprocess.DEVNULL)


def _reap(pid: int) -> None:
    proc = _CHILDREN.pop(pid, None)
    if proc is not None:
        proc.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still has a pid: look at its state, not just its existence.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _start_time(pid: int) -> str | None:
    """When process `pid` started, in clock ticks since boot (/proc/<pid>/stat, field 22); None
    when there is no such process. A pid with another start time is another process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def orphaned_brokers(under: Path) -> list[int]:
    """The pids of brokers this launcher started with their home under `under` whose starting
    process has exited. A test run killed from outside leaves its private brokers running (they
    have a session of their own), each with a core's worth of threads on a shared machine."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            config = Path(os.fsdecode(args[args.index(b"kafka.Kafka") + 1]))
        except (OSError, ValueError, IndexError):
            continue  # not a broker, or gone meanwhile
        if not config.is_relative_to(under):
            continue
        try:
            starter_pid, started = (config.parent / STARTER).read_text().split()
            starter_alive = _start_time(int(starter_pid)) == started
        except (OSError, ValueError):
            continue  # not started by this launcher
        if not starter_alive:
            found.append(int(entry.name))
    return found


def kill_orphaned_brokers(under: Path) -> list[int]:
    """SIGKILL the `orphaned_brokers` under `under` (their data is a test's, to be thrown away)."""
    killed = []
    for pid in orphaned_brokers(under):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            _reap(pid)  # when it is this process's child (a test's)
    return killed


def default_broker() -> Broker:
    port = int(os.environ.get("KAFKA_PORT", "9092"))
    home = Path(os.environ.get("KAFKA_HOME_DIR", REPO / "var" / "kafka"))
    return Broker(
        home=home, port=port, controller_port=int(os.environ.get("KAFKA_CONTROLLER_PORT", port + 1))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "reset", "status"])
    args = parser.parse_args(argv)
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        print(
            f"kafka: KAFKA_BOOTSTRAP_SERVERS={external} is set: using that broker, starting nothing"
        )
        return 0
    broker = default_broker()
    if args.command == "up":
        took = broker.up()
        print(
            f"kafka: broker ready on {broker.bootstrap} in {took:.1f}s (log {broker.log}, data {broker.data})"
        )
    elif args.command == "down":
        print("kafka: broker stopped" if broker.down() else "kafka: no broker of ours was running")
    elif args.command == "reset":
        broker.reset()
        print(f"kafka: broker stopped and {broker.data} wiped")
    else:
        pid = broker.pid()
        print(f"kafka: running, pid {pid}, {broker.bootstrap}" if pid else "kafka: not running")
        return 0 if pid else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
