"""The development secret file and the order in which secrets are resolved."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cli import devsecret
from sessionflow.signing import decode_secret, new_secret


def test_load_or_create_creates_a_private_secret_once(tmp_path: Path) -> None:
    path = tmp_path / ".dev-secrets"
    first = devsecret.load_or_create(path)
    assert first.startswith("whsec_")
    decode_secret(first)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert devsecret.load_or_create(path) == first
    assert [p.name for p in tmp_path.iterdir()] == [".dev-secrets"]  # no temp file left behind


def test_env_var_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / ".dev-secrets"
    devsecret.load_or_create(path)
    a, b = new_secret(), new_secret()
    env = {devsecret.ENV_VAR: f" {a} , {b},"}
    assert devsecret.resolve_secrets(environ=env, path=path) == [a, b]


def test_file_is_used_when_env_is_unset_or_blank(tmp_path: Path) -> None:
    path = tmp_path / ".dev-secrets"
    secret = devsecret.load_or_create(path)
    assert devsecret.resolve_secrets(environ={}, path=path) == [secret]
    assert devsecret.resolve_secrets(environ={devsecret.ENV_VAR: "  "}, path=path) == [secret]


def test_missing_file_is_an_error_unless_asked_to_create(tmp_path: Path) -> None:
    path = tmp_path / ".dev-secrets"
    with pytest.raises(devsecret.DevSecretError, match="SESSIONFLOW_WEBHOOK_SECRETS"):
        devsecret.resolve_secrets(environ={}, path=path)
    assert not path.exists()
    created = devsecret.resolve_secrets(environ={}, path=path, create=True)
    assert created == [devsecret.load_or_create(path)]


def test_default_path_is_read_at_call_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devsecret, "DEV_SECRETS_FILE", tmp_path / "elsewhere")
    secret = devsecret.load_or_create()
    assert (tmp_path / "elsewhere").exists()
    assert devsecret.resolve_secrets(environ={}) == [secret]


@pytest.mark.parametrize("content", ["", "# only a comment\n", "whsec_!!!\n"])
def test_unusable_file_is_an_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / ".dev-secrets"
    path.write_text(content)
    with pytest.raises(devsecret.DevSecretError):
        devsecret.resolve_secrets(environ={}, path=path)


def test_invalid_env_secret_is_an_error() -> None:
    with pytest.raises(devsecret.DevSecretError) as info:
        devsecret.resolve_secrets(environ={devsecret.ENV_VAR: "whsec_not base64!"})
    assert info.value.__cause__ is not None


def test_dev_file_sits_at_the_repo_root_and_is_git_ignored() -> None:
    root = devsecret.DEV_SECRETS_FILE.parent
    assert (root / "pyproject.toml").exists()
    assert ".dev-secrets" in (root / ".gitignore").read_text().splitlines()
