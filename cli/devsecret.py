"""The webhook secrets for a first run: SESSIONFLOW_WEBHOOK_SECRETS, else a git-ignored dev file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from cli.errors import CliError
from sessionflow.signing import SigningError, decode_secret, new_secret

ENV_VAR = "SESSIONFLOW_WEBHOOK_SECRETS"
# At the repository root, listed in .gitignore; `make run` and `sessionflow send` share it.
DEV_SECRETS_FILE = Path(__file__).resolve().parent.parent / ".dev-secrets"


class DevSecretError(CliError, RuntimeError):
    """No usable webhook secret: neither the variable nor the dev file provides one."""


def parse_secrets(value: str) -> list[str]:
    """Comma-separated `whsec_...` secrets, each checked to be a decodable key."""
    found = [s.strip() for s in value.split(",") if s.strip()]
    for secret in found:
        try:
            decode_secret(secret)
        except SigningError as exc:
            raise DevSecretError(f"invalid webhook secret: {exc}") from exc
    return found


def load_or_create(path: Path | str | None = None) -> str:
    """The secret in `path` (default: the repo's `.dev-secrets`), created if it does not exist.

    A new file holds one random `whsec_` secret, mode 0600.
    """
    path = Path(DEV_SECRETS_FILE if path is None else path)
    if path.exists():
        return _read(path)
    secret = new_secret()
    fd, tmp = tempfile.mkstemp(prefix=".dev-secrets.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(
                "# Development webhook secret, created by sessionflow; git-ignored. "
                f"Set {ENV_VAR} to override.\n{secret}\n"
            )
        # link() publishes the complete file or fails if another process won the race.
        os.link(tmp, path)
    except FileExistsError:
        return _read(path)
    finally:
        os.unlink(tmp)
    return secret


def resolve_secrets(
    *,
    environ: Mapping[str, str] | None = None,
    path: Path | str | None = None,
    create: bool = False,
) -> list[str]:
    """The secrets to sign or verify with: the variable if set, else the dev file.

    Without `create`, a missing dev file is an error: only `make run`'s first start may make one.
    """
    env = os.environ if environ is None else environ
    value = env.get(ENV_VAR, "")
    if value.strip():
        secrets = parse_secrets(value)
        if secrets:
            return secrets
    path = Path(DEV_SECRETS_FILE if path is None else path)
    if create:
        return parse_secrets(load_or_create(path))
    if not path.exists():
        raise DevSecretError(
            f"no webhook secret: set {ENV_VAR} (comma-separated whsec_... secrets) "
            f"or run `make run` once to create the development secret file {path}"
        )
    return parse_secrets(_read(path))


def _read(path: Path) -> str:
    lines = path.read_text(encoding="ascii").splitlines()
    content = ",".join(ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#"))
    if not content:
        raise DevSecretError(f"the development secret file {path} holds no secret")
    parse_secrets(content)
    return content
