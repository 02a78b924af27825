"""The base of every error the sessionflow package raises on purpose.

Each subclass also keeps the builtin it always was (ValueError, RuntimeError), so that callers
that catch those, pydantic's validators among them, behave as before.
"""


class SessionflowError(Exception):
    """Base of the sessionflow package's own errors."""
