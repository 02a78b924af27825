"""sessionflow.library_shape: a hooked function's source still says what the hook relies on."""

from __future__ import annotations

from sessionflow.library_shape import source_says


def _hooked() -> int:
    first = 1
    second = first + 1
    return second


def test_the_needles_are_found_in_their_order() -> None:
    assert source_says(_hooked, "first = 1", "second = first + 1", "return second")
    assert not source_says(_hooked, "return second", "first = 1")


def test_a_missing_needle_a_gone_function_and_one_without_source_do_not_fit() -> None:
    assert not source_says(_hooked, "third")
    assert not source_says(None, "anything")
    assert not source_says(len, "len")  # a builtin has no Python source
