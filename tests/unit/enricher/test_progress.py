"""Commit positions under out-of-order completion, the read-back point, the remembered ids."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from enricher.progress import PartitionProgress, Remembered, decode_metadata, encode_metadata


def test_the_position_waits_for_the_lowest_unfinished_offset() -> None:
    p = PartitionProgress(committed=10)
    assert p.pending_commit() is None
    for offset in (10, 11, 13):  # 12 is a transaction marker the consumer never sees
        p.start(offset)
    p.finish(11, 100)
    p.finish(13, 101)
    assert p.position() == 10
    # Position unchanged, but the transcripts of 11 and 13 exist: the metadata says where.
    assert p.pending_commit() == (10, "transcripts=100")
    p.committed_at(10, "transcripts=100")
    assert p.pending_commit() is None
    p.finish(10, None)  # skipped: nothing written
    assert p.pending_commit() == (14, "transcripts=102")
    p.committed_at(14, "transcripts=102")
    assert p.resume_from == 102


def test_a_partition_that_wrote_nothing_keeps_the_metadata_it_found() -> None:
    p = PartitionProgress(committed=5, resume_from=7)
    p.start(5)
    p.finish(5, None)
    assert p.pending_commit() == (6, "transcripts=7")


def test_metadata_round_trip() -> None:
    assert decode_metadata(encode_metadata(12)) == 12
    assert encode_metadata(None) == ""
    for other in (None, "", "someone else's", "transcripts=x", "transcripts=-1"):
        assert decode_metadata(other) is None


@given(st.data(), st.integers(min_value=1, max_value=40))
def test_no_commit_passes_an_unfinished_offset_nor_hides_a_written_transcript(
    data: st.DataObject, count: int
) -> None:
    offsets = sorted(data.draw(st.sets(st.integers(0, 200), min_size=count, max_size=count)))
    order = data.draw(st.permutations(offsets))
    p = PartitionProgress()
    for offset in offsets:
        p.start(offset)
    written: dict[int, int] = {}
    next_output = 0
    for offset in order:
        skipped = data.draw(st.booleans())
        out = None if skipped else next_output
        if out is not None:
            written[offset] = out
            next_output += 1
        p.finish(offset, out)
        pending = p.pending_commit()
        if pending is None:
            continue
        position, metadata = pending
        unfinished = [o for o in offsets if o not in order[: order.index(offset) + 1]]
        assert all(position <= o for o in unfinished)
        resume = decode_metadata(metadata)
        # A restart reads transcripts from `resume`: every transcript of an uncommitted input
        # lies at or past it.
        for o, out_offset in written.items():
            if o >= position:
                assert resume is not None
                assert out_offset >= resume
        p.committed_at(position, metadata)
    assert p.position() == offsets[-1] + 1


def test_remembered_is_a_bounded_lru() -> None:
    r = Remembered(2)
    r.add("a")
    r.add("b")
    r.add("a")  # a is fresh again
    r.add("c")
    assert "a" in r
    assert "b" not in r
    assert len(r) == 2
    r.discard("a")
    assert "a" not in r
    none = Remembered(0)
    none.add("x")
    assert "x" not in none
