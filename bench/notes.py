"""The prose of the bench report (latest.md): what each benchmark's figures say, from the figures,
and the changes tried while making it fast, with what they measured."""

from __future__ import annotations

from typing import Any

from bench.stats import ratio

# Changes tried while making it fast, with what they measured (kept here so the summary says it).
EXPERIMENTS = (
    "Producer, aiokafka `max_batch_size` 16 KB -> 256 KB (producer/publisher.py; one request is in"
    " flight per broker, and 16 KB batches hold 7 of our ~2 KB records per partition). Two"
    " alternating B1 runs each (5 s points, machine shared with other test runs): accepted/s at 64"
    " connections 9,635 / 10,531 before vs 10,235 / 7,936 after (within the noise); p99 at 256"
    " connections 553 / 1,190 ms before vs 82 / 129 ms after (the queue behind full batches is"
    " gone). The producer has since moved to librdkafka (bench/results/producer-experiments.md).",
    "Worker, aiokafka linger 5 ms for the transactional producers (PRODUCER_LINGER=0.005),"
    " B3 one run each: exactly-once 2,654 -> 2,869 events/s, at-least-once 3,486 -> 3,605; the"
    " bare-loop baseline moved 27k -> 26k in the same runs. Within the noise; not adopted.",
    "At-least-once correctness: each output waits for Kafka's ack before the table records the"
    " step (a crash could lose a completed record before). B3 at-least-once, one run each:"
    " 3,401 -> 2,221 events/s at the time (one event at a time). Kept: at-least-once must not"
    " lose records; the batch runtime later acknowledges a unit's outputs together.",
    "Worker, a batch at a time (streams/runtime, issue 11): the fetched records of the source"
    " topics go to the processor a partition at a time, outputs and changelog as record batches,"
    " one commit gate per unit, instead of Faust's per-event stream path. B3 exactly-once 2.9k"
    " (0.28 x the no-op Faust agent) -> 6.2k-7.6k events/s (1.2-1.4 x that agent, in the runs of"
    " 2 and 3 December).",
    "Worker state version 2 (pending halves keep their parsed fields; markers 84 bytes instead of"
    " a 160-byte JSON line; pairing parses the stored half's JSON instead of validating it again)."
    " Processor alone over B3's 20,000 events (bench/processor.py, process CPU, best of"
    " 5, two alternating runs each): 73.2 / 73.0 us/event before, 76.9 / 77.0 after: no speed"
    " gain (the work moved from pairing to the first half). Kept for the size of the state.",
    "Worker metrics added up per batch and applied once (each Prometheus inc takes a lock): the"
    " same micro bench 77.0 -> 72.5 us/event. format_ms formatting each second once: 72.5 ->"
    " 71.7. Both kept.",
    "Exactly-once commit interval 0.1 s vs 0.5 s, four alternating B3-style drains each (same"
    " plan, machine shared with a full test run): median 8,284 vs 7,477 events/s, 97 vs 101 us"
    " of worker CPU per event. Again on a quiet machine, three alternating drains each: median"
    " 8,802 vs 9,209 events/s (0.96), 104 vs 102 us per event; one same-run pair of the full"
    " bench read 6,197 vs 9,841, within the ±30% that single drains vary here. The default is"
    " 0.1 s (the floor of exactly-once latency, B4).",
    "Worker fetch wait at the broker, Faust's fixed 1.5 s vs 20 ms (SESSIONFLOW_FETCH_MAX_WAIT_MS;"
    " streams/runtime/consumer.py, 8). Seen first as B4 p99 of 1.7-2.5 s in both guarantees;"
    " instrumented, the worker's fetches returned nothing after a full second, then ~660 records"
    " at once: aiokafka's one fetch in flight asked only for the partitions with nothing new."
    " B4, four alternating runs (load average 4-6 from other work): exactly-once p50/p99"
    " 131/432 and 104/200 ms at 20 ms vs 369/2,368 and 1,074/2,117 ms at 1.5 s; at-least-once"
    " p99 346/103 vs 220/897 ms. 20 ms is the default. Throughput, B3-style exactly-once drains"
    " of 10,000 sessions (var/repro/ab.py), two runs of four alternating rounds: medians 8,473"
    " and 7,395 events/s at 20 ms vs 4,761 and 6,351 at 1.5 s. The short wait costs nothing;"
    " it also cut the clean-clone suite's reliability scenarios from 839 to 660 s (a restarted"
    " worker ready in at most 6.1 s instead of 25.2 in scenario 6).",
    "Exactly-once commit interval 0.1 s vs 0.5 s again after the fetch-wait change, four"
    " alternating drains (10,000 sessions): medians 7,734 vs 8,749 events/s (0.88), 121 vs 114"
    " us CPU per event. The full bench's single pair on the same machine read 4,566 vs 9,257"
    " (0.49) with the bare endpoint at 16.5k/s instead of the quiet 46k: the host was busy.",
    "Exactly-once commits at a fixed rate (each starts one interval after the last one started)"
    " instead of Faust's timer, which sleeps the interval after each commit ends: in theory an"
    " output then waits at most the interval plus its own commit, not a commit, the interval and"
    " its commit. B4, seven alternating rounds (var/repro/b4ab.sh, 15 s and 30 s runs, load 2-5):"
    " exactly-once p99 with Faust's timer 406, 268, 281, 284 ms in the 30 s runs vs 705, 373,"
    " 515, 433 ms at a fixed rate; commit means 34-44 vs 36-68 ms. About 22% more commits (12"
    " transactions each) on two cores shared with the broker cost more than the shorter wait"
    " saved. Not kept (reverted).",
    "Exactly-once: a transaction takes the group's offsets partition (AddOffsetsToTxn) as soon as"
    " it holds data instead of at the commit, which leaves TxnOffsetCommit and EndTxn on the"
    " commit's path (streams/runtime/producers.py, add_offsets_early). Commits of 12 partitions"
    " against the local broker, one record each every 100 ms, 4 alternating rounds of 100"
    " (var/repro/commit_ab.py): mean 20.9 -> 17.0 ms, p50 19.8 -> 15.8, p90 24.8 -> 21.1, p99"
    " 50.6 -> 47.2; lower p50 in every round. Under B4 load, four alternating rounds: commit"
    " mean 44, 35, 43, 38 ms -> 42, 34, 28, 30 ms; end-to-end p99 417, 281, 285, 263 -> 551,"
    " 328, 310, 280 ms, within this host's round-to-round spread (at-least-once p99, which has"
    " no commit to wait for, ranged 50-273 ms in the same runs). Kept.",
    "Restore a fetch at a time (streams/runtime/restore.py) instead of Faust's per-record"
    " recovery queue: B5 at 1,000,000 sessions, same day and broker, 204.8 s -> 11.4 s from a"
    " fresh worker's start to a completed probe on every partition (12.7 and 19.1 s in two later"
    " runs on a busier machine).",
    "Worker memory at 1,000,000 pending sessions (B5): 494 MB with the heap of (deadline, key)"
    " tuples and per-partition RocksDB caches -> 303.5 MB with the packed expiry index (41.6 MB"
    " for a million keys, tracemalloc) and one RocksDB budget -> 237.3 MB with the heap trimmed"
    " on each expiry tick (B5 at 300,000: 191 MB trimmed vs 207 / 237 MB untrimmed)."
    " MALLOC_ARENA_MAX=2 instead, at 300,000: 230 MB; not adopted.",
    "RocksDB budget 16 MB vs 64 MB, 1,000,000 writes of 500 bytes over 24 databases in one"
    " process: resident memory grew 65 vs 69 MB. The budget is not what bounds memory; 64 MB"
    " stays the default (SESSIONFLOW_ROCKSDB_MEMORY_MB).",
    "What bounds a restore: 1,000,000 changelog-like records (560 bytes) in 12 partitions, read"
    " by a bare aiokafka consumer in 3.8 s (266k/s); read and written to RocksDB in one write"
    " batch per partition and fetch as the worker does, 5.7 s, 1.4 s of it in the store. The"
    " worker restores 1M in 7-15 s after its start-up and rebalance: the fetch and decode of"
    " aiokafka's records is most of it, the store a quarter, the broker serves faster than both.",
    "Compression of the stored halves (40,000 pending states from the traffic generator's varied"
    " bodies, 1,341 bytes each, flushed and compacted): Snappy (RocksDB's default, in use)"
    " 0.52 of raw, LZ4 0.52, zstd 0.38 for 1.5 x the CPU to write and compact and 2 x to read."
    " Disk is not the constraint here (173 MB at a million sessions) and CPU is: Snappy kept.",
    "Consumer session timeout 6 s vs 10 s, B5 fail-over with standby replicas at 1,000,000"
    " sessions: 8.6 / 9.3 s vs 11.8 / 10.8 s from kill -9 to the first completed record of a"
    " killed worker's session. The default is 6 s (the broker's minimum).",
)


def _half_load_view(figures: dict[str, Any]) -> str:
    """The producer's own view of the half-load p99, and the floor the same rate has."""
    server, publish, floor = (
        figures.get(f"producer_{k}_p99_ms_half_load") for k in ("server", "publish", "baseline")
    )
    return (
        f"Of its p99 the producer timed {server} ms itself, {publish} ms of it the broker's"
        f" acknowledgement; the bare endpoint paced at the same rate had {floor} ms"
        " (bench/results/producer-experiments.md, section 8)."
    )


_ROLLING_RESTART = (
    "B5 rolling restart under load (bench/rolling_restart.py: two exactly-once workers,"
    " {sessions:,} complete sessions at a steady rate, one worker stopped and started again at"
    " once under its name; two restarts each): the longest a session waited, {dynamic_runs} s"
    " with the default membership (its partitions move to the other worker and back) against"
    " {static_runs} s as a static member (they wait for it; stop to ready {stop_to_ready} s);"
    " p99 {dynamic_p99} against {static_p99} s in the longer run of each."
)


def _measured_pair(
    b5: dict[str, Any], prefix: str, variants: tuple[str, str]
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """B5's `prefix`_<variant> results for both variants, or None when either did not measure."""
    first, second = (b5.get(f"{prefix}_{variant}") or {} for variant in variants)
    if first.get("longest_wait_s") is None or second.get("longest_wait_s") is None:
        return None
    return first, second


def _peak(peak_mb: float | None) -> str:
    """B5's peak RSS, where the run measured it (runs before it was measured have none)."""
    return "" if peak_mb is None else f", {peak_mb} MB at its peak"


def notes(results: dict[str, Any], details: dict[str, Any]) -> list[str]:
    """What the figures say, from the figures: bottlenecks, ratios, the honest caveats."""
    out: list[str] = []
    b1 = details.get("b1") or {}
    if b1.get("producer"):
        best = max(b1["producer"], key=lambda p: p["ok_rps"])
        base = max(b1["baseline"], key=lambda p: p["rps"])
        own = max(b1.get("baseline_own_stack") or [{"rps": None}], key=lambda p: p["rps"] or 0)
        out.append(
            f"B1: the producer accepted {best['ok_rps']:,.0f}/s at {best['connections']} connections"
            f" ({ratio(best['ok_rps'], base['rps'])} x the bare endpoint's {base['rps']:,.0f}/s on"
            " uvicorn as the producer configures it, producer.server.stack_config: the issue's"
            f" baseline; {ratio(best['ok_rps'], own['rps'])} x a bare endpoint on the producer's"
            f" own HTTP layer, {own['rps'] or 0:,.0f}/s, bench/bare_http1.py: what the webhook's"
            " own work costs beyond its HTTP). At that point the producer process used"
            f" {best.get('server_cpu_cores')} cores, the broker {best.get('broker_cpu_cores')} and the"
            f" load generator ({best.get('loadgen')}) {best.get('loadgen_cpu_cores')}: the generator"
            " is not the bottleneck. Each accepted request is an HMAC check, an envelope parse and a"
            " Kafka round trip with acks=all before the 202, so the producer pays the broker's"
            " latency per request and shares the 2 cores with it."
        )
    alternating = b1.get("alternating") or {}
    if alternating.get("rounds"):
        each = ", ".join(
            f"{r['producer_rps']:,.0f}/{r['bare_rps']:,.0f} = {r['ratio']}"
            for r in alternating["rounds"]
        )
        out.append(
            f"B1 in alternating rounds (producer at {alternating['connections']['producer']}"
            f" connections and bare endpoint at {alternating['connections']['bare']}, each its best"
            f" of the sweep, in turn, the order flipped each round): {each}; median ratio"
            f" `producer_ratio_alternating` {alternating['ratio_median']}. The sweeps above run"
            " minutes apart, so their ratio carries the machine's drift; these rounds do not."
        )
    paced = b1.get("paced") or []
    if paced:
        pts = ", ".join(
            f"{p['ok_rps']:,.0f}/s → p99 {p['p99_ms']} ms (p99.9 {p.get('p999_ms')}, max"
            f" {p.get('max_ms')})"
            for p in paced
        )
        out.append(
            "B2 (open loop, latency counted from each request's due time, at most"
            f" {paced[0].get('connections', 64)} requests in flight): {pts}. The half-load"
            f" point is `producer_p99_ms_half_load`. {_half_load_view(b1.get('figures') or {})}"
        )
    b3 = details.get("b3") or {}
    if b3.get("eos"):
        eos, alo, base = b3["eos"], b3["alo"], b3["baseline"]
        out.append(
            f"B3: {b3['events']:,} events ({b3['sessions']:,} sessions, pairs, a quarter again as"
            f" retries/resends, 30% reordered) over {b3['partitions']} partitions. Rates are input"
            " events/s between the first and the last completed record visible to read_committed"
            f" (startup excluded: {eos['startup_to_ready_s']} s to /readyz). Worker CPU while"
            f" draining: {eos.get('worker_cpu_cores')} cores (exactly-once),"
            f" {alo.get('worker_cpu_cores')} (at-least-once); the bare aiokafka loop reached"
            f" {base['eps']:,.0f}/s. Exactly-once output check: {eos['completed_records']:,} records"
            f" for {eos['expected_completed']:,} sessions."
        )
    b4 = details.get("b4") or {}
    if b4.get("eos"):
        eos_p99, interval_ms = b4["eos"]["p99_ms"], 1000 * b4["commit_interval_s"]
        bound = (
            "within the interval + 50 ms the goal allows"
            if eos_p99 is not None and eos_p99 <= interval_ms + 50
            else "above the interval + 50 ms the goal allows"
        )
        out.append(
            f"B4: steady {b4['alo']['rate_eps']:.0f} events/s through producer and worker; latency"
            " from the 2xx of a session's second half to its completed record read by a"
            " read_committed consumer (first 20% of the run left out as warm-up): p50/p99"
            f" {b4['alo']['p50_ms']}/{b4['alo']['p99_ms']} ms at-least-once,"
            f" {b4['eos']['p50_ms']}/{b4['eos']['p99_ms']} ms exactly-once at the default commit"
            f" interval of {b4['commit_interval_s']} s: exactly-once output waits for the commit,"
            f" so its p99 is {bound}."
        )
        commits = b4["eos"].get("commits") or {}
        ends = (
            "one transaction for all the worker's partitions"
            if b4["eos"]["transaction_scope"] == "worker"
            else "one transaction per partition that changed"
        )
        if commits.get("count"):
            out.append(
                f"B4 exactly-once commits, as the worker's sessionflow_commit_seconds saw them:"
                f" {commits['count']:.0f} commits, mean {commits['mean_ms']} ms, p50/p99"
                f" {commits['p50_ms']}/{commits['p99_ms']} ms (read from the histogram's"
                f" buckets). Each ends {ends} (the default scope): a record's exactly-once latency"
                " is the wait for the next commit plus the commit itself."
            )
        split = [
            b4[m].get(part) or {}
            for m in ("alo", "eos")
            for part in ("before_append", "after_append")
        ]
        if all(part.get("p99_ms") is not None for part in split):
            alo_before, alo_after, eos_before, eos_after = split
            out.append(
                "B4 split where the worker appended the completed record (its Kafka timestamp),"
                f" p50/p99: before it {alo_before['p50_ms']}/{alo_before['p99_ms']} ms at-least-once,"
                f" {eos_before['p50_ms']}/{eos_before['p99_ms']} ms exactly-once (the producer, the"
                " fetch, units waiting while a commit holds the gate); after it"
                f" {alo_after['p50_ms']}/{alo_after['p99_ms']} ms at-least-once,"
                f" {eos_after['p50_ms']}/{eos_after['p99_ms']} ms exactly-once (the wait for the"
                " commit and the commit)."
            )
        per_partition = b4.get("eos_partition") or {}
        if per_partition.get("p99_ms") is not None:
            partition_commits = per_partition.get("commits") or {}
            out.append(
                "B4 exactly-once with one transaction per partition"
                " (SESSIONFLOW_TRANSACTION_SCOPE=partition), same rate, same run: p50/p99"
                f" {per_partition['p50_ms']}/{per_partition['p99_ms']} ms against"
                f" {b4['eos']['p50_ms']}/{b4['eos']['p99_ms']} ms with one per worker; commit"
                f" p99 {partition_commits.get('p99_ms')} against {commits.get('p99_ms')} ms."
            )
        fanout = (b4.get("txn_fanout") or {}).get("figures") or {}
        if fanout.get("commit_p99_ms_one") is not None:
            out.append(
                "B4, the commit by transactions per commit (bench/txn_fanout.py, outside the"
                " worker, alternating rounds): the same records and offsets of 12 partitions every"
                " 100 ms, committed by 12 transactional producers at once (scope partition) or by"
                " one transaction holding all 12 (KIP-447's way, scope worker):"
                f" commit p50/p99 {fanout['commit_p50_ms_per_partition']}/"
                f"{fanout['commit_p99_ms_per_partition']} ms against"
                f" {fanout['commit_p50_ms_one']}/{fanout['commit_p99_ms_one']} ms; send to"
                f" read_committed p99 {fanout['send_to_read_p99_ms_per_partition']} against"
                f" {fanout['send_to_read_p99_ms_one']} ms; broker CPU per commit"
                f" {fanout['broker_cpu_ms_per_commit_per_partition']} against"
                f" {fanout['broker_cpu_ms_per_commit_one']} ms."
            )
    b1p = (b1.get("producer_profile") or {}).get("packages")
    if b1p:
        out.append(
            "Producer profile: one process, one core, and it is CPU-bound at saturation (see the"
            " cores above). Its time splits between the event loop and socket I/O (uvloop, shown as"
            " stdlib/Runner.run), its HTTP layer (producer/http1.py: httptools' parser and one write"
            " per answer), the hand-over to"
            " librdkafka and its delivery reports, and our handler (HMAC verify, orjson envelope"
            " parse, the response). No single frame dominates: beyond what one process accepts"
            " (B1 above) the lever is more producer processes (SESSIONFLOW_HTTP_PROCESSES), which"
            " pays only where they get cores of their own; this 2-core machine also runs the"
            " broker and the load generator (bench/results/producer-experiments.md)."
        )
    if b3.get("eos_ab"):
        f = results
        out.append(
            f"B3, same run: exactly-once at the default {f.get('worker_commit_interval_s')} s commit"
            f" interval {f.get('worker_eps_eos')} events/s, at 0.5 s"
            f" {f.get('worker_eps_eos_commit_500ms')} (ratio"
            f" {f.get('worker_eps_eos_vs_commit_500ms')}); the no-op Faust agent (bench/"
            f"faust_floor.py) {f.get('worker_faust_floor_eps_eos')}: the worker runs at"
            f" {f.get('worker_share_of_floor_eos')} x Faust's own floor, since it no longer takes"
            " Faust's per-event stream path. Scale-out over 24 partitions: one worker"
            f" {f.get('worker_scale_eps_1w')} events/s on {f.get('worker_scale_cpu_cores_1w')}"
            f" cores, two {f.get('worker_scale_eps_2w')} on {f.get('worker_scale_cpu_cores_2w')}"
            f" (x {f.get('worker_scale_ratio_2w')}): with the broker and the load on the same 2"
            " cores, a second worker adds what CPU is left."
        )
    b3p = ((b3.get("eos") or {}).get("profile") or {}).get("packages")
    if b3p:
        out.append(
            "Worker profile: the worker is CPU-bound in its own code now. Per raw event the"
            " processor spends most in validating the body (pydantic, once), building and"
            " encoding the completed record, and the metrics; the consumer thread decodes"
            " aiokafka's record batches beside it. Outputs and changelog go out as record batches,"
            " one per partition and topic per unit, so the send path is no longer per record."
        )
    b5 = details.get("b5") or {}
    if b5.get("figures"):
        f = b5["figures"]
        scale = (
            "measured"
            if not f["state_extrapolated"]
            else (
                f"extrapolated linearly from {f['state_sessions']:,} pending sessions (set"
                " BENCH_STATE_SESSIONS=1000000, the default, to measure it)"
            )
        )
        out.append(
            f"B5: {f['state_sessions']:,} pending sessions: worker RSS {f['state_rss_mb']} MB"
            f" 2 s after the fill{_peak(b5.get('rss_mb_peak'))}"
            f" ({b5['rss_mb_empty']} MB empty), RocksDB {f['state_rocksdb_mb']} MB on disk, a fresh"
            f" worker restored the table and completed one probe session per partition"
            f" {f['state_restore_s']} s after its start (empty-state start: {b5['empty_startup_s']} s)."
            f" The 1M figures are {scale}. Fail-over with standby replicas (two exactly-once"
            f" workers, kill -9 of one, the first completed record of a session it owned):"
            f" {f.get('state_failover_s')} s at the default"
            f" {f.get('state_failover_session_timeout_s')} s consumer session timeout,"
            f" {f.get('state_failover_s_session_10s')} s at 10 s: the group noticing the dead"
            " worker is most of it; the standby's partitions then restore in well under a second."
        )
        loads = _measured_pair(b5, "failover_load", ("partition", "worker"))
        if loads is not None:
            per_partition, per_worker = loads
            out.append(
                "B5 fail-over under load (bench/failover_load.py: two exactly-once workers,"
                f" {per_partition['sessions']:,} complete sessions at a steady rate, kill -9 of one"
                " mid-load, not restarted; two kills a scope): the longest a session sent after"
                f" the kill waited, {per_partition['runs_longest_wait_s']} s with one transaction"
                " per partition (the next owner aborts the lost one at once) against"
                f" {per_worker['runs_longest_wait_s']} s with one per worker (the next owner's"
                " restore fences the lost worker's transactional id); in the longer kill of each,"
                " the longest per partition,"
                f" {per_partition['longest_wait_per_partition_s'][:6]} against"
                f" {per_worker['longest_wait_per_partition_s'][:6]} s."
            )
        restarts = _measured_pair(b5, "rolling_restart", ("dynamic", "static"))
        if restarts is not None:
            dynamic, static = restarts
            out.append(
                _ROLLING_RESTART.format(
                    sessions=dynamic["sessions"],
                    dynamic_runs=dynamic["runs_longest_wait_s"],
                    static_runs=static["runs_longest_wait_s"],
                    stop_to_ready=static["stop_to_ready_s"],
                    dynamic_p99=dynamic["wait_p99_s"],
                    static_p99=static["wait_p99_s"],
                )
            )
        rebuild = b5.get("index_rebuild")
        if rebuild:
            out.append(
                f"B5, a partition taken over ({rebuild['sessions']:,} pending sessions in RocksDB,"
                " in-process, bench/index_rebuild.py): its expiry index is rebuilt"
                f" {rebuild['slice']:,} entries per unit of work, the longest unit"
                f" {rebuild['sliced_longest_unit_ms']} ms over {rebuild['sliced_units']} units"
                f" ({rebuild['sliced_total_ms']} ms in all), against"
                f" {rebuild['whole_unit_ms']} ms for the whole partition in one unit (the"
                " baseline, as it was before); the worker does nothing else during a unit, and"
                " a fetch that brings every partition taken over runs one unit of each."
            )
    out += [f"Tried: {e}" for e in EXPERIMENTS]
    return out
