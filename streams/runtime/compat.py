"""Every internal of faust-streaming and aiokafka that streams.runtime relies on, checked at start-up.

The runtime layer overrides library methods and reads a few private attributes. Were one renamed
in another version, an override would simply never be called, or an attribute read would fail
deep in a rebalance: the protection would silently disappear. So each is listed, with why it is
needed (streams/runtime/internals.py), and `check` verifies all of them against the installed
libraries and the live app before the worker starts; the worker refuses to run, naming the
versions and what no longer fits. The versions they were verified on are pinned in
pyproject.toml (`VERIFIED` below).
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

from streams.errors import StreamsError
from streams.runtime.internals import REQUIREMENTS, Requirement

log = logging.getLogger(__name__)

VERIFIED: Final = {
    "faust-streaming": "0.15.3",
    "aiokafka": "0.14.0",
    "mode-streaming": "0.7.1",
    "rocksdict": "0.3.29",
}


class IncompatibleLibraries(StreamsError, RuntimeError):
    """An internal the runtime layer depends on is missing or changed shape."""


def installed_versions() -> dict[str, str]:
    found = {}
    for name in VERIFIED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def problems(app: Any) -> list[Requirement]:
    """The requirements that do not hold for the installed libraries and this app."""
    failed = []
    for requirement in REQUIREMENTS:
        try:
            held = requirement.holds(app)
        except Exception:  # a check that breaks is a requirement that does not hold
            log.debug("compat check raised: %s", requirement.what, exc_info=True)
            held = False
        if not held:
            failed.append(requirement)
    return failed


def check(app: Any) -> None:
    """Refuse to run on libraries the runtime layer no longer fits."""
    installed = installed_versions()
    versions = ", ".join(f"{n} {v}" for n, v in installed.items())
    failed = problems(app)
    if failed:
        lines = [f"- {r.what}: {r.why}" for r in failed]
        raise IncompatibleLibraries(
            f"the worker cannot run on {versions}: streams/runtime depends on internals that are"
            f" missing or changed shape (verified on"
            f" {', '.join(f'{n} {v}' for n, v in VERIFIED.items())}):\n" + "\n".join(lines)
        )
    if installed != VERIFIED:
        log.warning("streams.runtime was verified on %s; running on %s", VERIFIED, versions)
