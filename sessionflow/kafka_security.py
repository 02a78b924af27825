"""How every Kafka client of a process connects: one reading of the settings for each client library.

The producer speaks to Kafka through librdkafka (confluent-kafka), everything else through aiokafka
(the worker's Faust app too, whose credentials come from these settings by way of
streams/app.py). Each construction site adds what these return, so one set of
`SESSIONFLOW_KAFKA_*` variables reaches every client: a client left out would fail to connect to
a secured cluster, and tests/integration/test_kafka_security.py runs every process and tool
against a listener that takes only SASL, only TLS, or both.
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.helpers import create_ssl_context

from sessionflow.settings import SASL_PROTOCOLS, TLS_PROTOCOLS, KafkaSettings


def uses_tls(settings: KafkaSettings) -> bool:
    return settings.kafka_security_protocol in TLS_PROTOCOLS


def uses_sasl(settings: KafkaSettings) -> bool:
    return settings.kafka_security_protocol in SASL_PROTOCOLS


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context of aiokafka's clients: the system's CAs, or only the configured file's."""
    if not uses_tls(settings):
        return None
    cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile is not None else None
    context: ssl.SSLContext = create_ssl_context(cafile=cafile)
    return context


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
    if uses_sasl(settings):
        options["sasl.mechanism"] = settings.kafka_sasl_mechanism
        options["sasl.username"] = settings.kafka_sasl_username
        options["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    return options
