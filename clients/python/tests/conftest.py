"""The suites run against a real authq worker pool: the Rust integration test `clients`
starts one in a fresh namespace and sets AUTHQ_TEST_AMQP_URL and AUTHQ_TEST_NAMESPACE. Run by
hand: start `authq serve --namespace NS --admin-caller guest --deny @denied.example`, then
`AUTHQ_TEST_NAMESPACE=NS .venv/bin/pytest` in clients/python."""

import os
import pathlib
import uuid

import pika
import pytest

from authq_client import AuthqClient

REPO = pathlib.Path(__file__).resolve().parents[3]


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: these tests need a running authq pool (see conftest.py)")
    return value


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return os.environ.get("AUTHQ_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")


@pytest.fixture(scope="session")
def namespace() -> str:
    return _env("AUTHQ_TEST_NAMESPACE")


@pytest.fixture(scope="session")
def client(amqp_url: str, namespace: str):
    c = AuthqClient(amqp_url, namespace=namespace, timeout=20)
    yield c
    c.close()


@pytest.fixture
def bare_namespace(amqp_url):
    """A namespace whose request exchange exists with nothing of authq behind it."""
    name = f"authq-py-{uuid.uuid4().hex[:12]}"
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.exchange_declare(name, "direct", auto_delete=False)
    yield name, channel
    channel.exchange_delete(name)
    connection.close()


@pytest.fixture
def noticed_namespace(amqp_url, bare_namespace):
    """A bare namespace with its notices exchange and a queue nobody consumes for ``ping``."""
    name, channel = bare_namespace
    channel.exchange_declare(f"{name}.notices", "fanout")
    queue = f"{name}.nobody"
    channel.queue_declare(queue, auto_delete=True)
    channel.queue_bind(queue, name, "ping")
    yield name, queue
    channel.queue_delete(queue)
    channel.exchange_delete(f"{name}.notices")
