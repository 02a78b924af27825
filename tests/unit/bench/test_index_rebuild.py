"""bench.index_rebuild: a RocksDB partition taken over, its index rebuilt both ways."""

from __future__ import annotations

from bench import index_rebuild


def test_both_ways_rebuild_the_whole_partition_and_report_their_units() -> None:
    result = index_rebuild.run(250, rounds=1, scan_slice=100)
    assert result["sessions"] == 250
    assert result["sliced_units"] == 3  # 100, 100, then 50: a short slice ends the scan
    assert 0 < result["sliced_longest_unit_ms"] <= result["sliced_total_ms"]
    assert result["whole_unit_ms"] > 0
