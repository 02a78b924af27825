"""bench.producer_parts' in-process listener figure: every webhook answered 202, or it says why."""

from __future__ import annotations

import pytest
import uvloop

from bench.producer_parts import listener_us
from bench.webhooks import ended_requests


def test_the_listener_figure_drives_every_webhook_to_its_202() -> None:
    raw = ended_requests(12)
    assert uvloop.run(listener_us(raw, repeat=3, connections=4)) > 0


def test_the_listener_figure_refuses_to_time_webhooks_that_were_not_accepted() -> None:
    raw = ended_requests(12)
    raw[5] = raw[5].replace(b"svix-signature: v1,", b"svix-signature: v1,AAAA")
    with pytest.raises(RuntimeError, match="not accepted"):
        uvloop.run(listener_us(raw, repeat=1, connections=4))
