"""The base of every error the worker's own code raises on purpose."""


class StreamsError(Exception):
    """Base of the streams package's own errors."""
