"""The core's tests' shared clock, envelopes and checked outputs."""

from __future__ import annotations

import uuid
from typing import Any

from streams.core import Step
from streams.decode import Envelope
from streams.models import CompletedSession, IncompleteSession, encode_output
from streams.state_codec import decode_state, encode_state
from tests.unit.streams import samples

TTL = 172_800_000
R = samples.T0_MS  # received-at: stream time, which decides
T = R + 1_000  # the worker's clock in the examples, which is only reported


def new_session_id() -> str:
    return str(uuid.uuid4())


def envelope_of(
    event: dict[str, Any], message_id: str, received_at_ms: int = samples.T0_MS
) -> Envelope:
    return samples.envelope(event, message_id=message_id, received_at_ms=received_at_ms)


def round_trip(step: Step) -> Step:
    if step.state is not None:
        state = step.state
        assert decode_state(encode_state(state), state.session_id) == state
    return step


def completed_of(step: Step) -> CompletedSession:
    (record,) = step.outputs
    assert isinstance(record, CompletedSession)
    # The core builds records without re-validation: the strict model must accept them.
    assert CompletedSession.model_validate_json(encode_output(record)) == record
    return record


def incomplete_of(step: Step) -> IncompleteSession:
    (record,) = step.outputs
    assert isinstance(record, IncompleteSession)
    assert IncompleteSession.model_validate_json(encode_output(record)) == record
    return record
