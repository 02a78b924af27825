"""One exception hierarchy per package, each error still the builtin it always was."""

from __future__ import annotations

import pytest

from sessionflow.errors import SessionflowError
from sessionflow.raw_record import KeyMissing
from sessionflow.signing import SigningError
from sessionflow.topics import TopicError
from streams.decode import DecodeError
from streams.errors import StreamsError


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (KeyMissing, ValueError),
        (SigningError, ValueError),
        (TopicError, RuntimeError),
    ],
)
def test_sessionflow_errors_share_one_base(
    error: type[Exception], builtin: type[Exception]
) -> None:
    assert issubclass(error, SessionflowError)
    assert issubclass(error, builtin)


def test_the_workers_decode_error_is_a_streams_error() -> None:
    assert issubclass(DecodeError, StreamsError)
    assert issubclass(DecodeError, ValueError)
