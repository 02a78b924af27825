"""The `sessionflow` command: one entry point, a subcommand per process or tool."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from sessionflow import __version__

Handler = Callable[[argparse.Namespace], int]


def _version(_: argparse.Namespace) -> int:
    print(f"sessionflow {__version__}")
    return 0


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

    version = commands.add_parser("version", help="print the version and exit")
    version.set_defaults(handler=_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
