"""When to try a request again and how long to wait first. Pure functions."""

from __future__ import annotations

import email.utils
import math
from enum import StrEnum
from typing import Final

# 408 (request timeout) and 425 (too early) are transient too; 429 says "slow down".
RETRY_STATUSES: Final = frozenset({408, 425, 429})
AUTH_STATUSES: Final = frozenset({401, 403})


class Verdict(StrEnum):
    OK = "ok"
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    RETRY = "retry"
    FAIL = "fail"


def classify(status: int) -> Verdict:
    """What an HTTP status means for a transcript request."""
    if 200 <= status < 300:
        return Verdict.OK
    if status == 404:
        return Verdict.NOT_FOUND
    if status in AUTH_STATUSES:
        return Verdict.UNAUTHORIZED
    if status in RETRY_STATUSES or 500 <= status < 600:
        return Verdict.RETRY
    # 3xx (redirects are never followed: the credential must not travel to another host)
    # and the other 4xx: asking again cannot help.
    return Verdict.FAIL


def backoff_seconds(failures: int, initial_s: float, cap_s: float, unit: float) -> float:
    """Exponential backoff with jitter for the n-th consecutive failure (n >= 1).

    "Equal jitter": half of the exponential step is kept, the other half is random
    (`unit` in [0, 1)), so retries spread out yet never come back at once.
    """
    step = min(cap_s, initial_s * math.pow(2, max(0, failures - 1)))
    return step / 2 + unit * step / 2


def parse_retry_after(value: str | None, now_epoch_s: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date; None if unreadable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            return None
        return max(0.0, moment.timestamp() - now_epoch_s)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def retry_after_delay(retry_after_s: float, unit: float) -> float:
    """Honour Retry-After: never earlier, plus a little jitter (at most 10 %, at most 1 s) so
    that the sessions told the same moment do not all come back in the same instant."""
    return retry_after_s + unit * min(1.0, retry_after_s * 0.1)
