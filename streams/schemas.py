"""JSON Schemas of the output records, generated from the models: `python -m streams.schemas`."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel

from enricher.records import TRANSCRIPT_SCHEMA_VERSION, TranscriptRecord
from streams.models import SCHEMA_VERSION, CompletedSession, IncompleteSession

SCHEMA_DIR: Final = Path(__file__).resolve().parent.parent / "schemas"

# File name -> (model, topic, description, version).
_RECORDS: Final[dict[str, tuple[type[BaseModel], str, str, int]]] = {
    f"completed-session.v{SCHEMA_VERSION}.json": (
        CompletedSession,
        "agntix.sessions.completed",
        "One record per session: session.created and session.ended paired (key: session id).",
        SCHEMA_VERSION,
    ),
    f"incomplete-session.v{SCHEMA_VERSION}.json": (
        IncompleteSession,
        "agntix.sessions.incomplete",
        "A session half that found no pair within the TTL (key: session id).",
        SCHEMA_VERSION,
    ),
    # Written by the enricher (enricher/records.py); generated here with the others.
    f"session-transcript.v{TRANSCRIPT_SCHEMA_VERSION}.json": (
        TranscriptRecord,
        "agntix.sessions.transcripts",
        "One record per completed session: its messages from the Agntix API, or why there are "
        "none (key: session id; compacted).",
        TRANSCRIPT_SCHEMA_VERSION,
    ),
}


def schema_of(
    model: type[BaseModel], topic: str, description: str, version: int = SCHEMA_VERSION
) -> dict[str, Any]:
    body = model.model_json_schema(mode="serialization")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://sessionflow.example/schemas/{topic}.v{version}.json",
        **body,
        "description": f"{description} Topic: {topic}.",
    }


def render() -> dict[str, str]:
    """File name -> file text, exactly as committed under schemas/."""
    return {
        name: json.dumps(schema_of(*record), indent=2, ensure_ascii=False) + "\n"
        for name, record in _RECORDS.items()
    }


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    directory = Path(args[0]) if args else SCHEMA_DIR
    for path in write(directory):
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
