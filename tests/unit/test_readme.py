"""The README's configuration table names every setting a process reads: a variable added to a
settings class without a row there is a setting operators cannot find."""

from __future__ import annotations

import pytest
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from cli.run import RunSettings
from enricher.settings import EnricherSettings
from producer.settings import ProducerSettings
from streams.settings import WorkerSettings
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def variables(name: str, alias: object) -> list[str]:
    """The environment variables that set field `name`: its aliases, else SESSIONFLOW_<NAME>."""
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)]
    if isinstance(alias, str):
        return [alias]
    return [f"SESSIONFLOW_{name.upper()}"]


@pytest.mark.parametrize(
    "settings", [ProducerSettings, WorkerSettings, EnricherSettings, RunSettings]
)
def test_every_setting_has_a_row_in_the_readme(settings: type[BaseSettings]) -> None:
    missing = [
        variables(name, field.validation_alias)[0]
        for name, field in settings.model_fields.items()
        if not any(f"`{v}`" in README for v in variables(name, field.validation_alias))
    ]
    assert missing == []
