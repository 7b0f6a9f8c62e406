"""The suites run against a real authq worker pool: the Rust integration test `clients`
starts one in a fresh namespace and sets AUTHQ_TEST_AMQP_URL and AUTHQ_TEST_NAMESPACE. Run by
hand: start `authq serve --namespace NS --admin-caller guest --deny @denied.example`, then
`AUTHQ_TEST_NAMESPACE=NS .venv/bin/pytest` in clients/python."""

import os
import pathlib

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
