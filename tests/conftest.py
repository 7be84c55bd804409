"""Shared test set-up: the real PostgreSQL, RabbitMQ (its own vhost) and Redis of this machine."""

import os
from collections import Counter

import pytest

pytest_plugins = ["tests.fixtures.stack", "tests.fixtures.api", "tests.fixtures.replica"]


@pytest.fixture(scope="session", autouse=True)
def _rabbitmq_test_vhost() -> None:
    """The suite's broker traffic stays in its own vhost, named by ``BROKER_URL`` (idempotent)."""
    from urllib.parse import unquote, urlsplit

    from django.conf import settings

    from tests.fixtures.rabbitmq import add_vhost

    vhost = unquote(urlsplit(settings.BROKER_URL).path.lstrip("/")) or "/"
    if vhost == "/":
        return
    # rabbitmqctl, or the management API where it cannot reach the node (CI's containers).
    add_vhost(vhost, urlsplit(settings.BROKER_URL).username or "guest")


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    """Each test starts with an empty cache (Redis db 15 in the suite)."""
    from django.core.cache import cache

    cache.clear()


_shared_node_ids: set[str] = set()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, tests that share a node id run once (its schedulers key the work by
    node id), and the run would pass without the others: such tests fail instead
    (:func:`pytest_runtest_setup`). Their module is marked ``serial``, which ``make test`` runs
    in one process."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        counts = Counter(item.nodeid for item in items)
        _shared_node_ids.update(nodeid for nodeid, count in counts.items() if count > 1)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.nodeid in _shared_node_ids:
        pytest.fail(
            f"{item.nodeid} names several tests, of which pytest-xdist runs one: mark the module "
            "serial (pyproject.toml) so that make test runs it in one process"
        )
