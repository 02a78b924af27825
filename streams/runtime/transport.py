"""The Kafka transport of the worker's app: Faust's aiokafka transport with our consumer."""

from __future__ import annotations

from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.runtime.consumer import Consumer


class Transport(faust_aiokafka.Transport):
    """`Consumer` is Faust's documented place for a transport's consumer class."""

    Consumer = Consumer
