"""The worker's edge with faust-streaming and aiokafka: the only code that knows their internals.

Faust keeps the app, the consumer group, the table (its changelog topic, recovery, standby
replicas), the web server and the timers. The source topics' records take this layer's path:
the consumer (consumer.py) hands each fetch to the runner (runner.py), which applies it a
partition at a time as units of work (unit.py) over the table's store (table.py), sends their
records with its own producers (producers.py) and commits between units (gate.py). The app and
transport install it (app.py, transport.py); compat.py checks at start-up that every internal
relied on (internals.py) is still there.
"""
