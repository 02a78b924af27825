"""`sessionflow send`: post a signed, realistic traffic plan and retry non-2xx like Svix does.

The delivery is cli/delivery.py, the progress line and the summary cli/progress.py.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

from cli import devsecret, traffic
from cli.delivery import DEFAULT_TIMEOUT_S, DEFAULT_URL, HeaderChoice, deliver
from cli.progress import progress_sink, render_summary
from sessionflow.signing import SigningError

# An option per traffic.Mix field (--retry-share sets retry_share): its default and its help.
_MIX_OPTIONS: Final = {
    "retry_share": (0.05, "share of deliveries sent twice with the same message id"),
    "resend_share": (0.02, "share of deliveries sent again under a new message id"),
    "reorder_share": (0.1, "share of complete sessions whose session.ended comes first"),
    "half_only_share": (0.02, "share of sessions that send only one half"),
    "planned_share": (0.05, "planned-type events per session event"),
}


def _share(value: str) -> float:
    try:
        share = float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from exc
    if not 0.0 <= share <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {value}")
    return share


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(value: str) -> int | float:
        try:
            number = kind(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not a {kind.__name__}: {value!r}") from exc
        if number <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
        return number

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `send` subcommand's options."""
    parser.description = (
        "Post realistic, Svix-signed Agntix session webhooks to the producer: sessions with both "
        "halves and a full analysis block, plus exact retries, resends under a new message id, "
        "reordering, half-only sessions and planned event types. Non-2xx responses are retried "
        "with exponential backoff like Svix. Secrets come from SESSIONFLOW_WEBHOOK_SECRETS, else "
        "the development secret file that `make run` creates. Exits non-zero if any event never "
        "got a 2xx."
    )
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    add = parser.add_argument
    add("--sessions", type=_positive(int), required=True, help="number of sessions to simulate")
    add(
        "--rate",
        type=_positive(float),
        default=None,
        help="target requests/s (default: as fast as possible)",
    )
    add("--url", default=DEFAULT_URL, help="the webhook endpoint")
    add(
        "--concurrency",
        type=_positive(int),
        default=64,
        help="open connections / requests in flight",
    )
    add(
        "--seed",
        type=int,
        default=None,
        help="traffic seed (default: random); the same seed gives the same bodies",
    )
    for name, (default, help_text) in _MIX_OPTIONS.items():
        add(f"--{name.replace('_', '-')}", type=_share, default=default, help=help_text)
    add(
        "--header-family",
        choices=[c.value for c in HeaderChoice],
        default=HeaderChoice.SVIX.value,
        help="svix-* or webhook-* signature headers, or a per-message mix",
    )
    add(
        "--max-attempts",
        type=_positive(int),
        default=8,
        help="attempts per delivery before giving up",
    )
    add(
        "--retry-base-seconds",
        type=_positive(float),
        default=0.5,
        help="first retry delay (doubles each attempt)",
    )
    add("--retry-cap-seconds", type=_positive(float), default=10.0, help="longest retry delay")
    add(
        "--timeout-seconds",
        type=_positive(float),
        default=DEFAULT_TIMEOUT_S,
        help="per-attempt timeout",
    )
    add(
        "--json-summary",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the summary (with ids) as JSON",
    )
    add("--no-progress", action="store_true", help="no live progress line")


def run(args: argparse.Namespace) -> int:
    """Build the plan, send it, print the summary; 0 only if every event got a 2xx."""
    try:
        secrets = devsecret.resolve_secrets()
    except devsecret.DevSecretError as exc:
        sys.stderr.write(f"sessionflow send: {exc}\n")
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    try:
        mix = traffic.Mix(**{name: getattr(args, name) for name in _MIX_OPTIONS})
        the_plan = traffic.plan(args.sessions, seed=seed, now=datetime.now(UTC), mix=mix)
    except traffic.TrafficError as exc:
        sys.stderr.write(f"sessionflow send: {exc}\n")
        return 2
    progress = None if args.no_progress else progress_sink()
    try:
        report = asyncio.run(
            deliver(
                the_plan,
                args.url,
                secrets,
                concurrency=args.concurrency,
                rate=args.rate,
                max_attempts=args.max_attempts,
                retry_base_s=args.retry_base_seconds,
                retry_cap_s=args.retry_cap_seconds,
                timeout_s=args.timeout_seconds,
                header_family=args.header_family,
                progress=progress,
            )
        )
    except SigningError as exc:
        sys.stderr.write(f"sessionflow send: {exc}\n")
        return 2
    finally:
        if progress is not None:
            progress.close()
    sys.stdout.write(render_summary(report))
    if args.json_summary is not None:
        args.json_summary.write_bytes(orjson.dumps(report.summary(), option=orjson.OPT_INDENT_2))
    return 0 if report.ok else 1
