"""sessionflow on a cluster with ACLs (deploy/README, "Kafka ACLs"): every process and tool runs
with the rights listed there and no others, and the fence (streams/runtime/fencing.py) ends a
lost worker's transaction with them; without its rights the fence is refused with an
authorization error, which the restore logs before it waits for the broker's timeout."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka import errors as Errors
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import ProducerFenced
from aiokafka.protocol.types import Int8, Int16, Int32

from sessionflow.kafka_security import aiokafka_connection
from sessionflow.settings import KafkaSettings
from streams.runtime.fencing import fence_lost_transactions
from streams.runtime.protocol import STRING, flexible_api, structs
from tests.conftest import load_launcher
from tests.integration.agntix_fake import API_KEY, FakeAgntix
from tests.integration.cli_fixtures import SecuredEnv, serving_transcripts
from tests.integration.conftest import free_port
from tests.kafka_helpers import make_topics

pytestmark = pytest.mark.integration

USER, PASSWORD = "worker", "worker-pw"
# Far past the test: only a fence ends a transaction within it.
TRANSACTION_TIMEOUT_MS = 120_000

# CreateAcls v3 (common/message/CreateAclsRequest.json); aiokafka's admin client has no ACLs.
CREATE_ACLS = flexible_api(
    "CreateAcls",
    30,
    3,
    request=(
        (
            "creations",
            structs(
                ("resource_type", Int8),
                ("resource_name", STRING),
                ("resource_pattern_type", Int8),
                ("principal", STRING),
                ("host", STRING),
                ("operation", Int8),
                ("permission_type", Int8),
            ),
        ),
    ),
    response=(
        ("throttle_time_ms", Int32),
        ("results", structs(("error_code", Int16), ("error_message", STRING))),
    ),
)
TOPIC, TRANSACTIONAL_ID = 2, 5  # resource types
LITERAL, PREFIXED = 3, 4  # pattern types
READ, WRITE, CREATE = 3, 4, 5  # operations
GROUP = 3  # resource type
ALLOW = 3


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A broker whose SASL listener's users are subject to ACLs; plaintext clients are super."""
    broker = load_launcher().Broker(
        home=tmp_path_factory.mktemp("kafka-acls"),
        port=free_port(),
        controller_port=free_port(),
        secured_port=free_port(),
        secured_users=((USER, PASSWORD),),
        secured_acls=True,
    )
    broker.up()
    try:
        yield broker
    finally:
        broker.down()


async def allow(bootstrap: str, *acls: tuple[int, str, int, int]) -> None:
    """(resource type, name, pattern type, operation) for User:USER, from any host."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        creations: list[tuple[Any, ...]] = [
            (kind, name, pattern, f"User:{USER}", "*", operation, ALLOW, {})
            for kind, name, pattern, operation in acls
        ]
        node = client.get_random_node()
        response = await client.send(node, CREATE_ACLS.request(creations))
        assert [code for code, *_ in response.results] == [0] * len(acls), response.results
    finally:
        await client.close()


@pytest.fixture
async def worker_client(acl_broker: Any) -> AsyncIterator[AIOKafkaClient]:
    """A client that authenticates as the workers' principal."""
    settings = KafkaSettings(
        kafka_bootstrap_servers=f"127.0.0.1:{acl_broker.secured_port}",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username=USER,
        kafka_sasl_password=PASSWORD,
    )
    client = AIOKafkaClient(**aiokafka_connection(settings))
    await client.bootstrap()
    try:
        yield client
    finally:
        await client.close()


async def lost_transaction(bootstrap: str, topic: str, transactional_id: str) -> AIOKafkaProducer:
    """A producer (a super user) with a transaction open on `topic` partition 0, as a killed
    worker leaves it."""
    await make_topics(bootstrap, topic, partitions=1)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=transactional_id,
        transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
    )
    await producer.start()
    await producer.begin_transaction()
    await producer.send_and_wait(topic, b"lost", partition=0)
    return producer


async def fence(client: AIOKafkaClient, topic: str, own_id: str) -> list[str]:
    await client._wait_on_metadata(topic)
    return await fence_lost_transactions(
        client, [TopicPartition(topic, 0)], own_id=own_id, timeout_ms=10_000, limit_s=15.0
    )


async def test_with_the_documented_rights_the_lost_transaction_is_fenced(
    acl_broker: Any, worker_client: AIOKafkaClient, unique: str
) -> None:
    prefix, changelog = f"a-{unique}-worker-", f"a-{unique}.changelog"
    await allow(
        acl_broker.bootstrap,
        (TRANSACTIONAL_ID, prefix, PREFIXED, WRITE),
        (TOPIC, changelog, LITERAL, READ),
    )
    lost = await lost_transaction(acl_broker.bootstrap, changelog, f"{prefix}lost")
    try:
        assert await fence(worker_client, changelog, own_id=f"{prefix}own") == [f"{prefix}lost"]
        with pytest.raises(ProducerFenced):
            await lost.commit_transaction()
    finally:
        await lost.stop()


@pytest.mark.parametrize(
    ("granted", "refusal"),
    [
        # DescribeProducers answers the partition with TOPIC_AUTHORIZATION_FAILED.
        pytest.param((), Errors.TopicAuthorizationFailedError, id="nothing"),
        # ListTransactions lists no id the principal may not describe.
        pytest.param(
            ((TOPIC, LITERAL, READ),),
            Errors.TransactionalIdAuthorizationFailed,
            id="changelog-only",
        ),
    ],
)
async def test_without_them_the_fence_is_refused_with_an_error(
    acl_broker: Any,
    worker_client: AIOKafkaClient,
    unique: str,
    granted: tuple[tuple[int, int, int], ...],
    refusal: type[Exception],
) -> None:
    """Never a silent nothing: the restore logs the refusal, then waits for the broker."""
    prefix, changelog = f"a-{unique}-worker-", f"a-{unique}.changelog"
    if granted:
        await allow(acl_broker.bootstrap, *[(k, changelog, p, op) for k, p, op in granted])
    lost = await lost_transaction(acl_broker.bootstrap, changelog, f"{prefix}lost")
    try:
        with pytest.raises(refusal):
            await fence(worker_client, changelog, own_id=f"{prefix}own")
        await lost.commit_transaction()  # not fenced: it commits
    finally:
        await lost.stop()


# deploy/README's table: (resource, prefix, operations). Kafka's Read and Write imply Describe,
# which the fence's listing of transactional ids needs.
DOCUMENTED_RIGHTS = [
    (TOPIC, "agntix.", (READ, WRITE, CREATE)),
    (TOPIC, "sessionflow", (READ, WRITE, CREATE)),
    (GROUP, "sessionflow", (READ,)),
    (TRANSACTIONAL_ID, "sessionflow", (WRITE,)),
]


@pytest.mark.parametrize("namespaced", [False, True], ids=["names-as-shipped", "namespace"])
async def test_every_process_and_tool_runs_with_the_documented_rights_alone(
    acl_broker: Any, tmp_path: Path, fake: FakeAgntix, unique: str, namespaced: bool
) -> None:
    """As shipped (no namespace) the table's prefixes apply; with a namespace, the namespace is
    every name's prefix. The broker is this module's own, so the shipped names are free."""
    namespace = f"a-{unique}." if namespaced else ""
    await allow(
        acl_broker.bootstrap,
        *[
            (kind, namespace or prefix, PREFIXED, operation)
            for kind, prefix, operations in DOCUMENTED_RIGHTS
            for operation in operations
        ],
    )
    env = SecuredEnv(
        bootstrap=f"127.0.0.1:{acl_broker.secured_port}",
        namespace=namespace,
        root=tmp_path,
        security={
            "SESSIONFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "SESSIONFLOW_KAFKA_SASL_USERNAME": USER,
            "SESSIONFLOW_KAFKA_SASL_PASSWORD": PASSWORD,
        },
    )
    with serving_transcripts(env, fake.url, API_KEY, seed=9) as (service, _):
        for command in (("topics", "--describe"), ("dlq", "replay")):
            done = env.run(*command)
            assert done.returncode == 0, done.stderr
    assert "AuthorizationFailed" not in service.log()
