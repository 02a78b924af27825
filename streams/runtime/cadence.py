"""When the worker commits: at a fixed rate, from the start of one commit to the next.

Faust's commit timer sleeps its whole interval after each commit ends, so commits start every
interval *plus* the last commit's duration. Exactly-once outputs become visible only when their
transaction commits, and the commit holds the gate (gate.py): a record that arrives as a commit
starts waits for that commit, then a full interval, then its own commit. At a 100 ms interval and
commits of 30-100 ms under load, that first commit was a quarter of B4's end-to-end p99.

Starting commits every interval instead bounds the wait for the next commit to one interval,
whatever the commits take: the latency is at most the interval plus one commit (Kafka Streams
counts its commit.interval.ms the same way). A commit that overran its interval is followed by at
least half an interval of processing, so a broker slow to commit cannot turn the worker into one
commit after another.
"""

from __future__ import annotations

# The share of the interval left for processing after a commit that overran it.
MIN_GAP_SHARE = 0.5


def next_commit_at(started: float, finished: float, interval: float) -> float:
    """When the commit after one that ran from `started` to `finished` begins (same clock)."""
    return max(started + interval, finished + interval * MIN_GAP_SHARE)
