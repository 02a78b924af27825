"""What the broker-fault scenarios share: their sender, a stack started under load, and a probe
beside the sender that times every answer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from cli import traffic
from cli.delivery import SendReport
from sessionflow.events import PLANNED_EVENT_TYPES
from tests.reliability.harness import (
    PrivateBroker,
    ProducerProcess,
    Stack,
    by_scale,
    send_signed,
    traffic_plan,
)
from tests.reliability.outputs import Expected, Outcome, wait_outputs
from tests.reliability.probe import Probe

# Scenario 1's TTL: longer than the outage plus the sender's backlog after it, so that the
# halves of one session, which the outage holds apart, still pair (with the suite's 30 s they
# expired apart: two incomplete records where one completed one was due).
OUTAGE_TTL_S = 120.0


async def send(
    url: str, sessions: int, seed: int, rate: float, half_only_share: float = 0.05
) -> SendReport:
    """Svix-like retries, scaled down: enough attempts to outlast a broker restart."""
    plan = traffic_plan(sessions, seed, half_only_share=half_only_share)
    return await send_signed(url, plan, rate=rate, max_attempts=60, retry_cap_s=2.0, concurrency=32)


async def start_stack(stack: Stack) -> tuple[PrivateBroker, ProducerProcess]:
    """The stack's own broker up, then a producer and worker w1: the broker and the producer."""
    assert stack.broker is not None
    await stack.broker.up()
    await stack.start("w1")
    return stack.broker, stack.producers[0]


async def start_under_load(
    stack: Stack, sessions: int, seed: int, rate: float
) -> tuple[PrivateBroker, ProducerProcess, list[int], asyncio.Task[SendReport]]:
    """start_stack, the pids of its processes, and the sender at work on its producer. No
    half-only sessions: their incomplete records would come OUTAGE_TTL_S later (scenarios 3,
    7 and 8 send them)."""
    broker, producer = await start_stack(stack)
    pids = stack.pids()
    sending = asyncio.create_task(
        send(producer.url, sessions, seed=seed, rate=rate, half_only_share=0)
    )
    return broker, producer, pids, sending


def planned_only(sessions: int, seed: int) -> traffic.Plan:
    """Planned-type events only: stored raw and counted, never paired, so the probe that sends
    them leaves no half-open session behind when it stops."""
    full = traffic_plan(sessions, seed, planned_share=1.0, retry_share=0.0, resend_share=0.0)
    kept = tuple(d for d in full.deliveries if d.event_type in PLANNED_EVENT_TYPES)
    return traffic.Plan(deliveries=kept, expectations=full.expectations)


@dataclass
class ProbedLoad:
    """A stack under load with the probe beside the sender, both at work: the fault goes in."""

    broker: PrivateBroker
    producer: ProducerProcess
    pids: list[int]
    sending: asyncio.Task[SendReport]
    probe: Probe
    probing: asyncio.Task[SendReport]

    async def outputs(self, stack: Stack) -> tuple[SendReport, SendReport, Expected, Outcome]:
        """The sender's report (every webhook got its 2xx), the probe's once it is stopped, what
        they imply, and the outputs once they are all there."""
        report = await self.sending
        self.probe.stop.set()
        probe_report = await self.probing
        assert report.ok, f"the sender gave up on {len(report.failed_message_ids)} webhooks"
        expected = Expected()
        expected.add(report)
        expected.add(probe_report)
        return report, probe_report, expected, await wait_outputs(stack.env, expected)


async def probed_load(stack: Stack, sessions: int, seed: int, rate: int) -> ProbedLoad:
    broker, producer, pids, sending = await start_under_load(stack, sessions, seed, rate)
    probe = Probe(producer.url, planned_only(by_scale(600, 3000), seed=100 + seed))
    probing = asyncio.create_task(probe.run())
    await asyncio.sleep(by_scale(6, 20))
    return ProbedLoad(broker, producer, pids, sending, probe, probing)
