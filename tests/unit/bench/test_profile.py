"""py-spy's collapsed stacks summarised into the frames and packages that cost most."""

from __future__ import annotations

from bench.profile import REPO, package_of, short_frame, summarize

SITE = "/venv/lib/python3.11/site-packages"


def test_frames_group_by_function_and_package() -> None:
    frame = f"send (/{SITE}/aiokafka/producer/producer.py:310)"
    assert short_frame(frame) == "send (producer/producer.py)"
    assert package_of(frame) == "aiokafka"
    assert package_of(f"_webhook ({REPO}/producer/app.py:160)") == "producer"
    assert package_of("run (/usr/lib/python3.11/asyncio/runners.py:118)") == "stdlib"


def test_summarize_counts_self_packages_and_our_code() -> None:
    ours = f"_webhook ({REPO}/producer/app.py:160)"
    verify = f"verify ({REPO}/producer/verify.py:80)"
    send = f"send ({SITE}/aiokafka/producer/producer.py:310)"
    lines = [
        f"main (x.py:1);{ours};{verify} 3",
        f"main (x.py:1);{ours};{send} 1",
        "garbage line",
    ]
    summary = summarize(lines)
    assert summary["samples"] == 4
    assert summary["self"] == [
        ["verify (producer/verify.py)", 75.0],
        ["send (producer/producer.py)", 25.0],
    ]
    assert summary["packages"] == [["producer", 75.0], ["aiokafka", 25.0]]
    assert summary["project"] == [
        ["_webhook (producer/app.py)", 100.0],
        ["verify (producer/verify.py)", 75.0],
    ]
    assert summarize([])["samples"] == 0
