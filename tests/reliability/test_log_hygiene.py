"""The suite's last check: no secret, signature value or phone number in any process's log."""

from __future__ import annotations

import re
import time

import pytest

from sessionflow.signing import sign
from tests.integration.producer_fixtures import SECRET
from tests.reliability.conftest import ReportBook
from tests.reliability.harness import runs_last
from tests.reliability.outputs import LEAKS, scan_for_leaks

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

SEGMENT = re.compile(r"^\d{20}\.log$")


def test_the_patterns_find_what_they_look_for() -> None:
    samples = {
        "webhook secret": f"settings: secrets={SECRET}",
        "signature value": f"svix-signature: {sign(SECRET, 'msg_1', int(time.time()), b'{}')}",
        "phone number": '"customerPhoneNumber": "+4915112345678"',
    }
    for what, line in samples.items():
        assert LEAKS[what].search(line), what
    assert not any(p.search("2026-11-27 04:27:40,512 [8553] offset 2950") for p in LEAKS.values())


@runs_last
def test_no_secret_signature_or_phone_in_any_log(report_book: ReportBook) -> None:
    """Runs after every other reliability test (see conftest): it reads all their logs."""
    # Process logs only: Kafka's segment files (00000000000000000000.log) and RocksDB's
    # write-ahead logs (sessions-0.db/000004.log, left behind by a worker that did not stop
    # cleanly) hold the webhooks and the table themselves, phone numbers included, by design.
    logs = sorted(
        p
        for p in report_book.root.rglob("*.log")
        if not SEGMENT.match(p.name) and not any(d.name.endswith(".db") for d in p.parents)
    )
    producers = [p for p in logs if p.name.startswith("producer")]
    if not producers:
        pytest.skip("no scenario ran in this session: nothing to scan")
    files, lines, findings = scan_for_leaks(logs)
    section = report_book.sections.get("9")
    if section is not None:
        section.figures["logs scanned (files / lines)"] = f"{files} / {lines}"
        section.figures["secrets, signatures, phone numbers found in logs"] = len(findings)
        if findings:
            section.outcome = "failed"
            section.notes.append(f"log check failed: {findings[0][:300]}")
    assert not findings, "\n".join(findings[:20])
