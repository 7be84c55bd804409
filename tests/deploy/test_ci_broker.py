"""The tests' broker vhosts (tests/fixtures/rabbitmq.py) on the real RabbitMQ: through
rabbitmqctl where it reaches the node, and through the management API, the path the GitHub
Actions test container takes (its broker is a service container)."""

from __future__ import annotations

import os
import urllib.error
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import pytest
from django.conf import settings
from kombu import Connection

from tests.fixtures import rabbitmq


def _vhost_url(vhost: str) -> str:
    return urlsplit(settings.BROKER_URL)._replace(path="/" + quote(vhost, safe="")).geturl()


def _can_declare(vhost: str) -> bool:
    """Whether the broker lets the suite's user in to ``vhost`` and declare a queue there."""
    try:
        with Connection(_vhost_url(vhost), connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
            channel = conn.channel()
            channel.queue_declare(queue="probe", auto_delete=True)
            channel.close()
    except Exception:
        return False
    return True


@pytest.fixture
def api() -> None:
    """The management API answering; missing is a failure in CI and a skip elsewhere."""
    try:
        rabbitmq.management_request("GET", "/api/overview")
    except (OSError, urllib.error.URLError) as error:
        if os.environ.get("CI"):
            pytest.fail(f"RabbitMQ's management API does not answer at {rabbitmq.MANAGEMENT_PORT}: {error}")
        pytest.skip(
            f"RabbitMQ's management API does not answer ({error}); deploy/ensure_services.sh enables it"
        )


@pytest.fixture
def vhost_name() -> Iterator[str]:
    name = f"{urlsplit(settings.BROKER_URL).path.lstrip('/') or 'oms'}_vhost_probe"
    yield name
    rabbitmq.delete_vhost(name)


def test_a_vhost_made_through_the_management_api_lets_the_suite_in_and_is_gone_once_deleted(api, vhost_name):
    assert not _can_declare(vhost_name)
    rabbitmq.add_vhost_by_api(vhost_name)
    rabbitmq.add_vhost_by_api(vhost_name)  # again: idempotent, as the suite's set-up needs
    assert _can_declare(vhost_name)
    rabbitmq.delete_vhost_by_api(vhost_name)
    rabbitmq.delete_vhost_by_api(vhost_name)  # a missing vhost is no error
    assert not _can_declare(vhost_name)


def test_the_helpers_take_whichever_path_works(vhost_name):
    # rabbitmqctl on this machine's broker, the API where the CLI cannot reach the node
    rabbitmq.add_vhost(vhost_name)
    assert _can_declare(vhost_name)
    rabbitmq.delete_vhost(vhost_name)
    assert not _can_declare(vhost_name)


def test_the_management_url_follows_the_broker_url(monkeypatch):
    monkeypatch.delenv("RABBITMQ_MANAGEMENT_URL", raising=False)
    assert (
        rabbitmq.management_url("amqp://oms:s3cret@rabbitmq:5672/oms_test")
        == "http://oms:s3cret@rabbitmq:15672"
    )
    monkeypatch.setenv("RABBITMQ_MANAGEMENT_URL", "http://guest:guest@mq.internal:8080/")
    assert (
        rabbitmq.management_url("amqp://guest:guest@rabbitmq:5672/x") == "http://guest:guest@mq.internal:8080"
    )


def test_an_error_of_the_api_is_reported_not_ignored(api):
    with pytest.raises(AssertionError, match="answered 40"):
        rabbitmq.management_request("PUT", "/api/permissions/no-such-vhost-h/guest", {"configure": ".*"})
