from __future__ import annotations

from functools import partial

import pytest

from enricher.readiness import readiness
from streams.readiness import Readiness

LIMIT_S = 60.0


# Ready unless a test says otherwise.
answer = partial(
    readiness, started=True, authorized=True, owns=True, unanswered_s=0.0, limit_s=LIMIT_S
)


def test_a_started_authorized_enricher_the_broker_answers_is_ready() -> None:
    assert answer(unanswered_s=LIMIT_S - 0.1) == Readiness(200, {"status": "ready"})


def test_before_its_start_it_is_starting_whatever_else_holds() -> None:
    got = answer(started=False, authorized=False, unanswered_s=10 * LIMIT_S)
    assert got == Readiness(503, {"status": "starting"})


def test_unanswered_reads_of_the_ends_for_the_limit_make_it_unreachable() -> None:
    assert answer(unanswered_s=LIMIT_S + 0.4) == Readiness(
        503, {"status": "unreachable", "unanswered_s": 60}
    )


def test_unreachable_comes_before_unauthorized() -> None:
    # The credential may be fine: with the broker gone, nothing can be told of it.
    assert answer(authorized=False, unanswered_s=LIMIT_S).body["status"] == "unreachable"


def test_a_refused_credential_makes_it_unauthorized() -> None:
    assert answer(authorized=False) == Readiness(503, {"status": "unauthorized"})


@pytest.mark.parametrize("authorized", [True, False])
def test_an_enricher_with_no_partitions_reads_no_ends_and_is_judged_by_the_rest(
    authorized: bool,
) -> None:
    assert answer(owns=False, authorized=authorized, unanswered_s=10 * LIMIT_S).status == (
        200 if authorized else 503
    )
