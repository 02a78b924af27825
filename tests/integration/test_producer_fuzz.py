"""Schemathesis fuzzes the running producer from its own /openapi.json: never a 5xx, always as documented."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sessionflow.signing import HeaderFamily, Signer
from tests.conftest import new_unique
from tests.integration.cli_fixtures import Service, ServiceEnv, cli

pytestmark = pytest.mark.integration

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def producer_env(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceEnv]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    env = ServiceEnv(bootstrap=kafka_bootstrap, namespace=f"t-{new_unique()}.", root=root)
    service = Service(cli("producer"), env.environ(), root / "producer.log")
    try:
        service.wait_ready(f"http://127.0.0.1:{env.admin_port}/readyz")
        yield env
    finally:
        assert service.stop() == 0, service.log()


def _operations(env: ServiceEnv) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{env.admin_port}/openapi.json")
    # An invalid operation raises here (Err.ok()), failing the test with its reason.
    operations = [cast(Any, result).ok() for result in schema.get_all_operations()]
    assert operations, "the OpenAPI document names no operation"
    return operations


def _base_url(env: ServiceEnv, operation: Any) -> str:
    """Each operation on the listener its document tags it with: public or admin."""
    (listener,) = operation.definition.raw["tags"]
    port = {"public": env.http_port, "admin": env.admin_port}[listener]
    return f"http://127.0.0.1:{port}"


def _body(case: Any) -> bytes:
    """The bytes of the generated JSON body, to sign exactly what is sent."""
    if case.body is None or type(case.body).__name__ == "NotSet":
        return b""
    return json.dumps(case.body).encode()


# Hypothesis drives schemathesis's strategies directly (its pytest plugin does not support
# pytest 9 yet); every operation of the document is fuzzed.
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))


def test_unsigned_requests_are_answered_as_documented(producer_env: ServiceEnv) -> None:
    statuses: Counter[int] = Counter()
    for operation in _operations(producer_env):

        @FUZZ
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call(base_url=_base_url(producer_env, case.operation), timeout=10)
            statuses[response.status_code] += 1
            case.validate_response(response, checks=CHECKS)

        check()
    # The fuzzing reached the endpoints: unsigned webhooks are refused, the GETs answer.
    assert statuses[401] > 0, statuses
    assert statuses[200] > 0, statuses


def test_signed_requests_are_answered_as_documented(producer_env: ServiceEnv) -> None:
    signer = Signer([producer_env.secret])
    posts = [op for op in _operations(producer_env) if op.method.upper() == "POST"]
    assert posts
    statuses: Counter[int] = Counter()

    for operation in posts:

        @FUZZ
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            # Genuinely signed bodies get past the signature into parsing and publishing.
            body = _body(case)
            headers = {
                "content-type": "application/json",
                **signer.headers(
                    HeaderFamily.SVIX, f"msg_{uuid.uuid4().hex}", int(time.time()), body
                ),
            }
            response = case.call(
                base_url=_base_url(producer_env, case.operation),
                headers=headers,
                data=body,
                timeout=10,
            )
            statuses[response.status_code] += 1
            case.validate_response(response, checks=CHECKS)
            assert response.status_code in (202, 413), response.text

        check()
    assert statuses[202] > 0, statuses
