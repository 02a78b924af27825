"""The base of every error the command-line tools raise on purpose.

Each subclass also keeps the builtin it always was (ValueError, RuntimeError), so that callers
that catch those behave as before.
"""


class CliError(Exception):
    """Base of the cli package's own errors."""
