"""Loaders shared by the deploy/ tests: compose, the Kubernetes objects, the Dockerfile."""

from __future__ import annotations

import base64
import os
import re
import subprocess
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from sessionflow.settings import KafkaSettings

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
# How long a checker (promtool, hadolint) may take.
LINT_TIMEOUT_S = 60.0
S = TypeVar("S", bound=KafkaSettings)
VALID_SECRET = "whsec_" + base64.b64encode(b"sessionflow-test-key-0123456789").decode()
SESSIONFLOW_SERVICES = {
    "producer": "producer",
    "worker-1": "worker",
    "worker-2": "worker",
    "enricher": "enricher",
}
VALID_API_KEY = "pk_live_" + "0123456789abcdef" * 2


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def k8s_objects() -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return objects


def k8s(kind: str, name: str) -> dict[str, Any]:
    (obj,) = [o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (c,) = workload["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = c
    return result


def dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    return [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.startswith("#")]


def load_settings(cls: type[S], monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> S:
    """The process's settings object as it would load from exactly this environment."""
    for name in list(os.environ):
        if name.startswith(("SESSIONFLOW_", "AGNTIX_")) or name == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return cls()


def dockerfile_uid() -> int:
    users = [ln.split()[1] for ln in dockerfile() if ln.startswith("USER ")]
    return int(users[-1].split(":")[0])


def named_ports(workload: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container(workload)["ports"]}


def run_tool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a checker (promtool, hadolint) and keep what it printed; the caller judges the code."""
    return subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, timeout=LINT_TIMEOUT_S, check=False
    )
