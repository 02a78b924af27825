"""The packages' arrows point one way: the CLI on top, the services below it, the base under all."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("producer", "streams", "tables", "enricher")
BASE = "sessionflow"


def imported_packages(package: str) -> dict[str, set[str]]:
    """Each module of the package (a path) with the top-level packages it imports, lazily too."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                # A relative import stays inside its own package.
                names.add(package if node.level else (node.module or "").split(".")[0])
        found[str(path.relative_to(REPO))] = names
    return found


def test_the_walk_sees_imports() -> None:
    # Guards the two tests below against passing on an empty or blind walk.
    assert "sessionflow" in imported_packages("producer")["producer/settings.py"]


@pytest.mark.parametrize("package", [BASE, *SERVICES])
def test_nothing_below_the_cli_imports_it(package: str) -> None:
    offenders = {path for path, names in imported_packages(package).items() if "cli" in names}
    assert offenders == set()


def test_the_base_imports_no_service_and_no_tool() -> None:
    above = {*SERVICES, "cli", "bench", "tests"}
    offenders = {
        path: names & above for path, names in imported_packages(BASE).items() if names & above
    }
    assert offenders == {}
