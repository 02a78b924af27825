"""How a process tells that an installed library still has an internal it hooks: the source of
the library's function still says what the hook relies on. Used by the start-up checks of the
worker (streams/runtime/internals.py) and of the metadata backoff (sessionflow/metadata_backoff.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


def source_says(fn: Callable[..., Any] | None, *needles: str) -> bool:
    """The source of `fn` contains `needles` in this order (none: the function is gone)."""
    if fn is None:
        return False
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return False
    at = 0
    for needle in needles:
        at = source.find(needle, at)
        if at < 0:
            return False
    return True
