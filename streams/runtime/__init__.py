"""The worker's edge with faust-streaming and aiokafka: the only code that knows their internals.

Faust keeps the app, the consumer group, the table (its changelog, recovery, standby replicas),
the web server and the timers. What sessionflow needs beyond Faust's own extension points lives
here, each piece with its reason: the consumer (streams/runtime/consumer.py), the transport and
app that install it (transport.py, app.py), the commit gate (gate.py) and the start-up check that
every internal relied on is still there (compat.py).
"""
