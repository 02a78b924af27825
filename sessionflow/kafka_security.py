"""How every Kafka client of a process connects: one reading of the settings for each client library.

The producer speaks to Kafka through librdkafka (confluent-kafka), everything else through aiokafka
(the worker's Faust app too, whose credentials come from these settings by way of
streams/app.py). Each construction site adds what these return, so one set of
`SESSIONFLOW_KAFKA_*` variables reaches every client: a client left out would fail to connect to
a secured cluster, and tests/integration/test_kafka_security.py runs every process and tool
against a listener that takes only SASL, only TLS, or both.

`refusal` tells a broker that answers and refuses a client (credentials, certificate) from one
that does not answer yet: the first stops a service at start, the second is waited for.
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
from pathlib import Path
from typing import Any, Final, TypeGuard

import aiokafka
from aiokafka import conn as aiokafka_conn
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context

from sessionflow.errors import SessionflowError
from sessionflow.settings import SASL_PROTOCOLS, TLS_PROTOCOLS, KafkaSettings


def uses_tls(settings: KafkaSettings) -> bool:
    return settings.kafka_security_protocol in TLS_PROTOCOLS


def uses_sasl(settings: KafkaSettings) -> bool:
    return settings.kafka_security_protocol in SASL_PROTOCOLS


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context of aiokafka's clients: the system's CAs, or only the configured file's; with
    the client certificate, where one is configured."""
    if not uses_tls(settings):
        return None
    context: ssl.SSLContext = create_ssl_context(
        cafile=_path(settings.kafka_ssl_cafile),
        certfile=_path(settings.kafka_ssl_certfile),
        keyfile=_path(settings.kafka_ssl_keyfile),
        # Never None: OpenSSL would prompt on the terminal for an encrypted key's password.
        password=settings.kafka_ssl_key_password.get_secret_value(),
    )
    return context


def _path(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def aiokafka_security(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if uses_tls(settings):
        options["ssl_context"] = ssl_context(settings)
    if uses_sasl(settings):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def aiokafka_connection(settings: KafkaSettings) -> dict[str, Any]:
    """Where Kafka is and how to reach it, for an aiokafka client: its bootstrap servers and
    `aiokafka_security`, so that no client is given the one without the other."""
    return {"bootstrap_servers": settings.kafka_bootstrap_servers, **aiokafka_security(settings)}


def librdkafka_security(settings: KafkaSettings) -> dict[str, str]:
    """librdkafka's configuration properties for the same connection."""
    options = {"security.protocol": settings.kafka_security_protocol.lower()}
    if uses_tls(settings):
        # "probe": the system's CA bundle, wherever this machine keeps it (the wheel's own
        # OpenSSL does not know the distribution's path).
        cafile = settings.kafka_ssl_cafile
        options["ssl.ca.location"] = str(cafile) if cafile is not None else "probe"
        if settings.kafka_ssl_certfile is not None and settings.kafka_ssl_keyfile is not None:
            options["ssl.certificate.location"] = str(settings.kafka_ssl_certfile)
            options["ssl.key.location"] = str(settings.kafka_ssl_keyfile)
        if settings.kafka_ssl_key_password.get_secret_value():
            options["ssl.key.password"] = settings.kafka_ssl_key_password.get_secret_value()
    if uses_sasl(settings):
        options["sasl.mechanism"] = settings.kafka_sasl_mechanism
        options["sasl.username"] = settings.kafka_sasl_username
        options["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    return options


# -- why Kafka refuses a client --------------------------------------------------------------------
# aiokafka's clients log why a bootstrap connection failed and raise a bare KafkaConnectionError, so
# a refused password, an untrusted broker certificate or a client certificate the broker turns down
# looks like a broker that is down, and a service would wait out its start-up timeout for a broker
# that will never take it. `refusal` opens one connection itself, with the function aiokafka's
# client bootstraps with: aiokafka.conn.create_conn and collect_hosts, which are not in aiokafka's
# documented API (verified on 0.14.0, pinned in pyproject.toml). `check_refusal_probe` refuses to
# run when they no longer fit.
_CREATE_CONN_PARAMETERS: Final = frozenset(
    {
        "host",
        "port",
        "request_timeout_ms",
        "ssl_context",
        "security_protocol",
        "sasl_mechanism",
        "sasl_plain_username",
        "sasl_plain_password",
    }
)
# Answers that no retry changes: the credentials, the mechanism, the broker's certificate (and,
# below, the client's).
_REFUSALS: Final = (
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
    ssl.SSLCertVerificationError,
)

# The TLS alerts (OpenSSL's reasons end so) with which a broker that requires client certificates
# turns ours down: none sent, or one it does not trust, that has expired, or was revoked. They
# arrive at the first read, after the handshake; aiokafka raises its KafkaConnectionError from
# them. Where it no longer does, such a broker is taken for one that is down, and waited for.
_CERTIFICATE_ALERTS: Final = (
    "BAD_CERTIFICATE",
    "CERTIFICATE_REQUIRED",
    "CERTIFICATE_UNKNOWN",
    "UNKNOWN_CA",
    "CERTIFICATE_EXPIRED",
    "CERTIFICATE_REVOKED",
    "UNSUPPORTED_CERTIFICATE",
)


class KafkaClientMismatch(SessionflowError, RuntimeError):
    """aiokafka no longer has the connection function `refusal` opens its probe with."""


class KafkaRefused(SessionflowError, RuntimeError):
    """Kafka answers, and refuses this client for good: its credentials or its certificate."""


def check_refusal_probe() -> None:
    """Refuse to run when aiokafka.conn no longer has what `refusal` calls (see above)."""
    create_conn = getattr(aiokafka_conn, "create_conn", None)
    if not inspect.iscoroutinefunction(create_conn) or not callable(
        getattr(aiokafka_conn, "collect_hosts", None)
    ):
        raise KafkaClientMismatch(
            f"aiokafka {aiokafka.__version__} has no aiokafka.conn.create_conn coroutine or"
            " collect_hosts (verified on 0.14.0): update sessionflow/kafka_security.py"
        )
    missing = _CREATE_CONN_PARAMETERS - set(inspect.signature(create_conn).parameters)
    if missing:
        raise KafkaClientMismatch(
            f"aiokafka {aiokafka.__version__}'s create_conn takes no {', '.join(sorted(missing))}"
            " (verified on 0.14.0): update sessionflow/kafka_security.py"
        )


async def refusal(settings: KafkaSettings, timeout_s: float) -> str | None:
    """Why Kafka refuses these settings for good, read from one connection to each bootstrap
    server in turn; None when none answers (a broker that is down or starting) or one accepts.
    A plaintext client has nothing to be refused: it is not probed."""
    if not (uses_tls(settings) or uses_sasl(settings)):
        return None
    security = aiokafka_security(settings)
    for host, port, _family in aiokafka_conn.collect_hosts(settings.kafka_bootstrap_servers):
        try:
            connection = await asyncio.wait_for(
                aiokafka_conn.create_conn(
                    host, port, request_timeout_ms=int(timeout_s * 1000), **security
                ),
                timeout_s,
            )
        except _REFUSALS as exc:
            return _why(settings, f"{host}:{port}", exc)
        except KafkaConnectionError as exc:
            if _certificate_alert(exc.__cause__):  # the broker's TLS alert about ours
                return _why_not_ours(settings, f"{host}:{port}", exc.__cause__)
            continue
        except (KafkaError, OSError, TimeoutError):
            continue
        connection.close()
        return None
    return None


def _why(settings: KafkaSettings, server: str, exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        trusted = (
            f"the CA file {settings.kafka_ssl_cafile}"
            if settings.kafka_ssl_cafile is not None
            else "the system's CAs (SESSIONFLOW_KAFKA_SSL_CAFILE is not set)"
        )
        return (
            f"Kafka at {server}: its certificate is not trusted by {trusted}: {exc.verify_message}"
        )
    return (
        f"Kafka at {server} refused {settings.kafka_sasl_mechanism} authentication as user"
        f" {settings.kafka_sasl_username!r} (SESSIONFLOW_KAFKA_SASL_USERNAME and _PASSWORD): {exc}"
    )


def _certificate_alert(error: BaseException | None) -> TypeGuard[ssl.SSLError]:
    """A TLS alert in which the broker turns down the client's certificate, or its absence."""
    reason = getattr(error, "reason", None) if isinstance(error, ssl.SSLError) else None
    return isinstance(reason, str) and "ALERT" in reason and reason.endswith(_CERTIFICATE_ALERTS)


def _why_not_ours(settings: KafkaSettings, server: str, alert: ssl.SSLError) -> str:
    if settings.kafka_ssl_certfile is None:
        return (
            f"Kafka at {server} asks for a client certificate (mutual TLS), and"
            f" SESSIONFLOW_KAFKA_SSL_CERTFILE and _KEYFILE are not set: {alert.reason}"
        )
    return (
        f"Kafka at {server} does not accept the client certificate"
        f" {settings.kafka_ssl_certfile} (SESSIONFLOW_KAFKA_SSL_CERTFILE): {alert.reason}"
    )
