"""Local table files survive a clean stop only."""

from __future__ import annotations

from pathlib import Path

from streams.state import close_state, open_state


def _table(tmp_path: Path) -> Path:
    tabledir = tmp_path / "v1" / "tables"
    (tabledir / "sessions-0.db").mkdir(parents=True)
    (tabledir / "sessions-0.db" / "000001.log").write_bytes(b"x")
    return tabledir


def test_a_clean_stop_keeps_the_table_once(tmp_path: Path) -> None:
    tabledir = _table(tmp_path)
    close_state(tmp_path)
    assert open_state(tmp_path, tabledir)
    assert (tabledir / "sessions-0.db" / "000001.log").exists()
    # The marker is used up: a crash of this run is not covered by the last clean stop.
    assert not open_state(tmp_path, tabledir)
    assert not tabledir.exists()


def test_without_the_marker_the_table_is_deleted(tmp_path: Path) -> None:
    tabledir = _table(tmp_path)
    assert not open_state(tmp_path, tabledir)
    assert not tabledir.exists()
    assert not open_state(tmp_path / "fresh", tmp_path / "fresh" / "v1" / "tables")
