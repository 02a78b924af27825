"""The `sessionflow` command: one entry point, a subcommand per process or tool."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from cli import dlq, inspect, run, send, tail, topic_admin
from sessionflow import __version__

Handler = Callable[[argparse.Namespace], int]


def _version(_: argparse.Namespace) -> int:
    print(f"sessionflow {__version__}")
    return 0


def _producer(_: argparse.Namespace) -> int:
    from producer.server import serve
    from producer.settings import ProducerSettings

    serve(ProducerSettings())
    return 0


def _worker(_: argparse.Namespace) -> int:
    from sessionflow.errors import SessionflowError
    from streams.runtime.compat import IncompatibleLibraries
    from streams.settings import WorkerSettings
    from streams.worker import run

    try:
        return run(WorkerSettings())
    except IncompatibleLibraries as exc:
        print(f"sessionflow worker: {exc}", file=sys.stderr)
        return 2
    except SessionflowError as exc:  # Kafka refused this client or the topics, before Faust ran
        print(f"sessionflow worker: refusing to start: {exc}", file=sys.stderr)
        return 2


def _enricher(_: argparse.Namespace) -> int:
    from enricher.errors import EnricherConfigError
    from enricher.server import serve
    from enricher.settings import load_settings
    from sessionflow import metadata_backoff

    try:
        settings = load_settings()
        metadata_backoff.require()
    except (EnricherConfigError, metadata_backoff.AiokafkaChanged) as exc:
        sys.stderr.write(f"sessionflow enricher: refusing to start: {exc}\n")
        return 2
    return serve(settings)


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand: its line in `sessionflow --help`, its own --help, and what runs it."""

    name: str
    help: str
    description: str | None = None
    # None for a command whose actions set their own handler (`dlq replay`).
    handler: Handler | None = None
    # Adds the command's options and actions; None for a command without any.
    arguments: Callable[[argparse.ArgumentParser], None] | None = None


COMMANDS: Final = (
    Command("version", help="print the version and exit", handler=_version),
    Command(
        "producer",
        help=(
            "run the webhook intake (HTTP on SESSIONFLOW_HTTP_PORT, default 8080; admin on "
            "SESSIONFLOW_ADMIN_PORT, default 8081)"
        ),
        description=(
            "Serve POST /webhooks/agntix: verify the Svix signature, publish the raw bytes to "
            "agntix.webhooks.raw with acks=all, answer 2xx only after Kafka acknowledged them. "
            "The public port serves only that and GET /livez; /healthz, /readyz, /metrics and "
            "/openapi.json are on the admin port (SESSIONFLOW_ADMIN_PORT), which must not face "
            "the internet. Settings: SESSIONFLOW_* variables."
        ),
        handler=_producer,
    ),
    Command(
        "worker",
        help="run one Faust worker (metrics on SESSIONFLOW_WORKER_PORT, default 6066)",
        description=(
            "Consume agntix.webhooks.raw, drop duplicates, pair session.created with session.ended "
            "into agntix.sessions.completed (exactly once), report unpaired halves after the TTL on "
            "agntix.sessions.incomplete. Run more workers with the same settings to share partitions."
        ),
        handler=_worker,
    ),
    Command(
        "enricher",
        help="fetch each completed session's transcript from the Agntix API (metrics on 6067)",
        description=(
            "Consume agntix.sessions.completed (read_committed) and, per session, fetch "
            "GET {AGNTIX_API_URL}/api/v1/chat/sessions/{id}/messages with AGNTIX_API_KEY "
            "(x-api-key) or AGNTIX_API_TOKEN (Bearer); write one record per session to the "
            "compacted agntix.sessions.transcripts (status ok, not_found or failed). Offsets are "
            "committed after Kafka acknowledged the record. /metrics, /healthz, /readyz on "
            "SESSIONFLOW_ENRICHER_PORT. Refuses to start without AGNTIX_API_URL and a credential."
        ),
        handler=_enricher,
    ),
    Command(
        "send",
        help="post realistic signed webhook traffic to a producer (a load generator)",
        description=(
            "Make sessions with both halves and full analysis blocks, exact retries, resends under "
            "new message ids, reordering, half-only sessions and planned event types; sign them like "
            "Svix with every secret of SESSIONFLOW_WEBHOOK_SECRETS (or the development secret file); "
            "post them, retrying non-2xx like Svix does. Exits non-zero if any event never got a 2xx."
        ),
        handler=send.run,
        arguments=send.add_arguments,
    ),
    Command(
        "run",
        help="run the producer and one worker (and the enricher when configured): `make run`",
        description=(
            "Start `sessionflow producer` and one `sessionflow worker` as child processes with "
            "this environment (and `sessionflow enricher` when AGNTIX_API_URL and AGNTIX_API_KEY "
            "or AGNTIX_API_TOKEN are set), wait until they answer, and print where to look. Without "
            "SESSIONFLOW_WEBHOOK_SECRETS it creates (or reuses) a git-ignored development secret "
            "that `sessionflow send` reads too. Ctrl-C or SIGTERM stops both children "
            "(SIGTERM, then SIGKILL after SESSIONFLOW_RUN_STOP_TIMEOUT_SECONDS); if one dies, "
            "the other is stopped and the exit code is 1."
        ),
        handler=run.run,
    ),
    Command(
        "tail",
        help="print a topic's records as JSON lines (completed, incomplete, transcripts, dlq, raw)",
        description=(
            "Read a topic as a read_committed consumer without a consumer group (nothing is "
            "committed, nobody is disturbed) and print one JSON document per record: indented on "
            "a terminal, one line each otherwise. Dead letters and raw records show their "
            "headers (reason, stage, message-id...) and the body as text, or as base64 when it "
            "is not UTF-8. Without --follow it stops at the end it found at start."
        ),
        handler=tail.run,
        arguments=tail.add_arguments,
    ),
    Command(
        "inspect",
        help="one session's story: raw records, dead letters, the table, its output; a verdict",
        description=(
            "Read-only: read the session's partition (from its key) of the raw, dead-letter, "
            "completed and incomplete topics since --since (read_committed, no consumer group, "
            "stops at the end found at start), ask a worker's GET /sessions/{id} what the table "
            "holds, and print a verdict: completed, waiting, incomplete, dead_lettered or "
            "unknown. --json prints one JSON object."
        ),
        handler=inspect.run,
        arguments=inspect.add_arguments,
    ),
    Command(
        "dlq",
        help="dead-letter tools: `dlq replay` re-publishes dead letters after a fix",
        description="Work with the dead-letter topic agntix.webhooks.dlq.",
        arguments=dlq.add_arguments,
    ),
    Command(
        "topics",
        help="create the project's topics and describe them (partitions, replication, retention)",
        description=(
            "Create the missing topics with the partitions and configs the services declare "
            "(the same code they run at start; SESSIONFLOW_PARTITIONS, "
            "SESSIONFLOW_REPLICATION_FACTOR, SESSIONFLOW_TOPIC_NAMESPACE), then describe them as "
            "a table. --describe creates nothing. Exits 1 if a topic is missing or its partition "
            "count differs from the settings."
        ),
        handler=topic_admin.run,
        arguments=topic_admin.add_arguments,
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sessionflow",
        description=(
            "Agntix session webhooks (via Svix) into exactly-once Kafka streams: "
            "a verifying HTTP producer, Faust workers that pair session.created/session.ended, "
            "and tools to drive and inspect them."
        ),
    )
    parser.add_argument("--version", action="version", version=f"sessionflow {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.description)
        if command.arguments is not None:
            command.arguments(sub)
        if command.handler is not None:
            sub.set_defaults(handler=command.handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
