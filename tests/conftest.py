"""Shared test set-up: the real PostgreSQL, RabbitMQ (its own vhost) and Redis of this machine."""

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
