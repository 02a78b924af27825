"""The bench's process helpers: ports with room for a producer's several admin listeners, never
handed out twice, in lanes for processes that pick side by side; a process's memory, now and at
its peak."""

from __future__ import annotations

import os
import socket

import pytest

from bench.proc import PORT_BLOCK, free_port, peak_rss_mb, rss_mb, share_ports


def test_free_port_leaves_room_for_the_ports_after_it() -> None:
    port = free_port(room=3)
    with socket.socket() as a, socket.socket() as b, socket.socket() as c:
        for sock, candidate in ((a, port), (b, port + 1), (c, port + 2)):
            sock.bind(("127.0.0.1", candidate))  # raises if the run is not free


def test_free_port_never_hands_out_a_port_twice() -> None:
    ports = [free_port(room=2) for _ in range(200)]
    taken = [p + i for p in ports for i in range(2)]
    assert len(set(taken)) == len(taken)


def test_processes_side_by_side_pick_in_their_own_lanes() -> None:
    before = share_ports(1, 3)
    try:
        ports = [free_port(room=2) for _ in range(50)]
    finally:
        share_ports(*before)  # under xdist, this worker's own lane
    assert {(p + i) // PORT_BLOCK % 3 for p in ports for i in range(2)} == {1}


def test_a_lane_outside_the_lanes_is_refused() -> None:
    with pytest.raises(ValueError, match="lane 2 is not one of 2"):
        share_ports(2, 2)


def test_the_peak_rss_is_the_high_water_mark_not_the_present() -> None:
    pid = os.getpid()
    before = rss_mb(pid)
    ballast = b"x" * (64 * 1024 * 1024)  # written, so resident
    held = rss_mb(pid)
    del ballast
    after, peak = rss_mb(pid), peak_rss_mb(pid)
    assert before is not None
    assert held is not None
    assert after is not None
    assert peak is not None
    assert held > before + 32  # the ballast came
    assert after < held - 32  # and left
    assert peak > after + 32  # the mark remembers it


def test_a_process_that_is_gone_has_no_rss() -> None:
    # Above Linux's largest pid (2**22), so no process has it.
    assert rss_mb(2**22 + 1) is None
    assert peak_rss_mb(2**22 + 1) is None
