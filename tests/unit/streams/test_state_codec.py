"""The table value codec: round trips, sizes, version 1 read as version 2, foreign bytes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.core import (
    CompletionMarker,
    HalfFields,
    HalfSeen,
    PendingSession,
    StateDecodeError,
    deadline_ms,
    on_event,
)
from streams.decode import digest_of
from streams.models import Direction, Platform, SessionType
from streams.state_codec import decode_state, encode_state, stored_deadline_ms
from tests.unit.streams import samples
from tests.unit.streams.steps import TTL, T, completed_of, envelope_of, new_session_id

# State codec --------------------------------------------------------------------------------


def test_state_codec_round_trips_both_kinds() -> None:
    pending = PendingSession(
        session_id=new_session_id(),
        event_type="session.ended",
        message_id='msg_é\n"x"',
        digest=bytes(range(8)),
        received_at_ms=1,
        first_seen_ms=2**53,
        body=b'{"a":\n1}\n\n',
        fields=HalfFields(
            new_session_id(), SessionType.VOICE, Platform.PHONE, Direction.INBOUND, -1, 2**62, 0
        ),
    )
    marker = CompletionMarker(
        session_id=new_session_id(),
        closed_at_ms=T,
        created=HalfSeen("msg_c", b"\x00" * 8),
        ended=HalfSeen("msg_é", b"\xff" * 8),
    )
    for state in (pending, marker):
        assert decode_state(encode_state(state), state.session_id) == state


def test_the_session_id_is_the_key_not_part_of_the_value() -> None:
    sid = new_session_id()
    pending = on_event(None, envelope_of(samples.session_created(sid), "msg_1"), T, TTL).state
    assert pending is not None
    assert sid.encode() not in encode_state(pending).partition(b"\n")[0]


def test_completion_marker_is_a_few_dozen_bytes() -> None:
    sid = new_session_id()
    ended = samples.session_ended(sid)
    pending = on_event(None, envelope_of(ended, "msg_2dQp5e6aBcDeFgHiJkLmNoPq"), T, TTL).state
    assert pending is not None
    assert len(encode_state(pending)) > len(samples.to_bytes(ended))
    created = samples.session_created(sid)
    done = on_event(pending, envelope_of(created, "msg_2dQp5e6aBcDeFgHiJkLmNoPr"), T, TTL).state
    assert done is not None
    # Two Svix message ids (28 characters each), two digests, the time: nothing else.
    assert len(encode_state(done)) == 2 + 8 + 8 + 8 + 2 + 2 * 28


# A table written by sessionflow before state version 2 (the pending half repeated the session
# id and kept the body only; markers were JSON).
def _v1_pending(sid: str, event: dict[str, Any], message_id: str) -> bytes:
    body = samples.to_bytes(event)
    head = [1, "P", sid, event["eventType"], message_id, digest_of(body).hex(), samples.T0_MS, T]
    return orjson.dumps(head) + b"\n" + body


def test_a_table_written_in_version_1_is_read_and_pairs_as_version_2_does() -> None:
    sid = new_session_id()
    created, ended = samples.session_created(sid), samples.session_ended(sid)
    old = decode_state(_v1_pending(sid, ended, "msg_e"), sid)
    new = on_event(None, envelope_of(ended, "msg_e"), T, TTL).state
    assert isinstance(old, PendingSession)
    assert isinstance(new, PendingSession)
    assert old.fields == new.fields
    assert old.body == new.body
    from_old = completed_of(on_event(old, envelope_of(created, "msg_c"), T, TTL))
    from_new = completed_of(on_event(new, envelope_of(created, "msg_c"), T, TTL))
    assert from_old.__dict__ == from_new.__dict__
    marker = decode_state(orjson.dumps([1, "M", sid, T, "msg_c", "00" * 8, "msg_e", "ff" * 8]), sid)
    assert marker == CompletionMarker(
        sid, T, HalfSeen("msg_c", bytes(8)), HalfSeen("msg_e", b"\xff" * 8)
    )
    # Written again (the next change of the session), a version-1 state is version 2.
    assert encode_state(old) == encode_state(new)


def test_stored_deadline_reads_what_decoding_would_say_in_every_version() -> None:
    sid = new_session_id()
    created, ended = samples.session_created(sid), samples.session_ended(sid)
    pending = on_event(None, envelope_of(ended, "msg_e"), T, TTL).state
    assert pending is not None
    done = on_event(pending, envelope_of(created, "msg_c"), T + 5, TTL).state
    assert done is not None
    v1_marker = orjson.dumps([1, "M", sid, T, "msg_c", "00" * 8, "msg_e", "ff" * 8])
    for data in (
        encode_state(pending),
        encode_state(done),
        _v1_pending(sid, ended, "m"),
        v1_marker,
    ):
        state = decode_state(data, sid)
        expected = (deadline_ms(state, TTL), isinstance(state, PendingSession))
        assert stored_deadline_ms(data, sid, TTL) == expected
    with pytest.raises(StateDecodeError):
        stored_deadline_ms(b'[2,"P",oops\n{}', sid, TTL)
    with pytest.raises(StateDecodeError):
        stored_deadline_ms(b"\x02M" + bytes(3), sid, TTL)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"{}",
        b"[]",
        b'[3,"P"]\n{}',
        b'[2,"M","s",1,"a","00","b","00"]',
        b'[1,"X","s"]',
        b'[1,"M","s",1,"a","zz","b","00"]',
        b'[1,"M","s",1]',
        b'[1,"P","s","session.created","m","00",1,2]',  # pending without a body
        b'[1,"P","s","usage.updated","m","00",1,2]\n{}',
        b'[1,"P","s","session.created","m","00",1,2]\n{"not":"a session"}',
        b'[2,"P","session.created","m","00",1,2,"a","VOICE","PHONE","INBOUND",1,5,6]\n{}',
        b'[2,"P","session.ended","m","00",1,2,"a","VOICE","PHONE","INBOUND",1,null,null]\n{}',
        b'[2,"P","session.created","m","00",1,2,"a","ROCKET","PHONE","INBOUND",1,null,null]\n{}',
        b"\x02M" + bytes(10),  # a truncated marker
        b"\x02M" + bytes(24) + b"\x00\x09ab",  # a message id longer than what follows
    ],
)
def test_decode_state_rejects_foreign_bytes(data: bytes) -> None:
    with pytest.raises(StateDecodeError):
        decode_state(data, "s")
