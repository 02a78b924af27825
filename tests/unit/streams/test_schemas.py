"""The committed JSON Schemas are what the models generate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from enricher.records import TranscriptRecord
from streams import schemas
from streams.models import CompletedSession, IncompleteSession

REPO = Path(__file__).resolve().parents[3]


def test_schema_dir_is_the_repository_schemas_folder() -> None:
    assert schemas.SCHEMA_DIR == REPO / "schemas"


@pytest.mark.parametrize("name", sorted(schemas.render()))
def test_committed_schema_equals_generated(name: str) -> None:
    committed = (REPO / "schemas" / name).read_text(encoding="utf-8")
    assert committed == schemas.render()[name], "run `python -m streams.schemas` and commit"


def test_schemas_require_every_field_of_the_contract() -> None:
    rendered = {name: json.loads(text) for name, text in schemas.render().items()}
    completed = rendered["completed-session.v1.json"]
    incomplete = rendered["incomplete-session.v1.json"]
    assert completed["required"] == list(CompletedSession.model_fields)
    assert incomplete["required"] == list(IncompleteSession.model_fields)
    assert completed["properties"]["schemaVersion"]["const"] == 1
    assert completed["additionalProperties"] is False
    # Pass-through blocks stay open: unknown keys are kept.
    assert completed["properties"]["metadata"]["anyOf"][0]["additionalProperties"] is True
    assert incomplete["properties"]["event"]["type"] == "object"
    transcript = rendered["session-transcript.v1.json"]
    assert transcript["required"] == list(TranscriptRecord.model_fields)
    assert transcript["additionalProperties"] is False
    assert transcript["$id"].endswith("/agntix.sessions.transcripts.v1.json")
    # Messages are kept verbatim: any object, unknown keys included.
    assert transcript["properties"]["messages"]["anyOf"][0]["items"]["additionalProperties"] is True


def test_main_writes_the_files(tmp_path: Path) -> None:
    assert schemas.main([str(tmp_path)]) == 0
    for name, text in schemas.render().items():
        assert (tmp_path / name).read_text(encoding="utf-8") == text
