"""The enricher's exception hierarchy: one base, one line per failure it raises on purpose."""

from __future__ import annotations


class EnricherError(Exception):
    """Base of every error the enricher raises on purpose."""


class EnvelopeError(EnricherError):
    """A 2xx answer whose body is not a transcript page we can read."""


class TranscriptTooLarge(EnricherError):
    """The answers for one session exceed the configured byte cap."""


class EnricherConfigError(EnricherError):
    """The environment lacks what the enricher needs (API URL, a credential) or holds nonsense."""


class EnricherCrashed(EnricherError):
    """A session's task failed in a way nobody handles: the process stops, a restart retries."""
