"""The read replica: lists, search and analytics from a real streaming replica, the rest on the primary.

The replica is a hot standby of the test PostgreSQL (tests/fixtures/replica.py). Pausing its
replay (``pg_wal_replay_pause``) makes it visibly behind: what the query side answers then
shows where it read.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from eventstore.bus import drain
from queries.analytics import refresh_views
from queries.models import OrderReadModel
from tests.fixtures.replica import REPLICA_PORT, ROOT, add_alias, remove_alias, replay_paused, wait_replayed

pytestmark = [pytest.mark.django_db(transaction=True, databases=["default", "replica"]), pytest.mark.slow]

BODY = {"items": [{"product_id": "SKU-G", "quantity": 2}], "payment": {"method": "card", "token": "tok_ok"}}


def ids(client, path: str) -> list[str]:
    response = client.get(path)
    assert response.status_code == 200, response.content
    return [row["order_id"] for row in response.json()["results"]]


def fallbacks(reason: str) -> float:
    return REGISTRY.get_sample_value("oms_db_replica_fallbacks_total", {"reason": reason}) or 0.0


def all_fallbacks() -> float:
    return sum(fallbacks(r) for r in ("error", "recent_error", "not_streaming", "lagging"))


def scrape(client) -> dict[str, float]:
    """The unlabelled samples and the source_up ones of GET /metrics."""
    text = client.get("/metrics").content.decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name if not sample.labels else f"{sample.name}{sorted(sample.labels.items())}"
            samples[key] = sample.value
    return samples


def test_lists_and_search_read_the_replica_while_the_command_side_reads_its_writes(
    replica, place_and_run, alice_client, api_client, settings
) -> None:
    settings.DATABASE_REPLICA_MAX_LAG = 600  # a paused replica is not skipped here
    first = place_and_run("alice", [("SKU-W", 1)])
    wait_replayed()
    assert ids(alice_client, "/api/orders") == [first]
    before = all_fallbacks()

    with replay_paused():
        response = alice_client.post("/api/orders", BODY, format="json")
        assert response.status_code == 202, response.content
        second = response.json()["order_id"]
        # GET /api/orders/{id} reads the event store on the primary: the order is there at once.
        detail = alice_client.get(f"/api/orders/{second}")
        assert detail.status_code == 200 and detail.json()["order_id"] == second
        drain()  # the saga runs and the projection commits, on the primary
        assert OrderReadModel.objects.filter(order_id=second, status="COMPLETED").exists()

        # The replica has not replayed it: the query side's answers come from the replica.
        assert ids(alice_client, "/api/orders") == [first]
        assert ids(alice_client, "/api/orders/customer/alice") == [first]
        assert ids(alice_client, "/api/orders/search?q=gadget") == []
        assert all_fallbacks() == before

        metrics = scrape(api_client)
        assert metrics["oms_metrics_source_up[('source', 'replica')]"] == 1
        assert metrics["oms_db_replica_streaming"] == 1
        assert metrics["oms_db_replica_lag_bytes"] > 0
        assert metrics["oms_db_replica_lag_seconds"] > 0

    wait_replayed()
    # Caught up: the answers computed while it lagged were not kept in the cache.
    assert ids(alice_client, "/api/orders") == [second, first]
    assert ids(alice_client, "/api/orders/customer/alice") == [second, first]
    assert ids(alice_client, "/api/orders/search?q=gadget") == [second]
    assert all_fallbacks() == before


def test_analytics_read_the_replica(replica, place_and_run, admin_client, settings) -> None:
    settings.DATABASE_REPLICA_MAX_LAG = 600
    place_and_run("alice", [("SKU-W", 1)])
    refresh_views()
    wait_replayed()
    today = timezone.now().date().isoformat()
    path = f"/api/orders/analytics?from={today}&to={today}"
    assert admin_client.get(path).json()["orders_by_status"]["COMPLETED"] == 1

    with replay_paused():
        place_and_run("bob", [("SKU-G", 1)])
        refresh_views()  # on the primary: two completed orders there
        assert admin_client.get(path).json()["orders_by_status"]["COMPLETED"] == 1
    wait_replayed()
    assert admin_client.get(path).json()["orders_by_status"]["COMPLETED"] == 2


def test_a_replica_further_behind_than_the_limit_is_skipped(
    replica, place_and_run, alice_client, settings
) -> None:
    settings.DATABASE_REPLICA_MAX_LAG = 0.2
    with replay_paused():
        order = place_and_run("alice", [("SKU-W", 1)])
        time.sleep(0.5)
        before = fallbacks("lagging")
        assert ids(alice_client, "/api/orders") == [order]  # from the primary
        assert fallbacks("lagging") == before + 1


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def replica_at(port: int) -> Iterator[None]:
    remove_alias()
    add_alias(port)
    try:
        yield
    finally:
        remove_alias()
        add_alias(REPLICA_PORT)


def test_an_unreachable_replica_leaves_the_primary_to_answer(
    replica, place_and_run, alice_client, api_client
) -> None:
    order = place_and_run("alice", [("SKU-W", 1)])
    with replica_at(_closed_port()):
        errors, rested = fallbacks("error"), fallbacks("recent_error")
        assert ids(alice_client, "/api/orders") == [order]
        assert fallbacks("error") == errors + 1
        # Left alone for a few seconds: the next read does not try it again.
        assert ids(alice_client, "/api/orders/search?q=widget") == [order]
        assert fallbacks("recent_error") == rested + 1
        assert scrape(api_client)["oms_metrics_source_up[('source', 'replica')]"] == 0


def test_database_replica_url_adds_the_alias_and_the_router() -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": "x" * 50,
        "JWT_SIGNING_KEY": "y" * 50,
        "ALLOWED_HOSTS": "example.test",
        "DATABASE_URL": "postgres://app@db.example:5432/oms",
        "DATABASE_REPLICA_URL": "postgres://reader@replica.example:5432/oms",
    }
    code = (
        "import json, django; from django.conf import settings; django.setup();"
        "r = settings.DATABASES['replica'];"
        "print(json.dumps([r['HOST'], r['USER'], r['NAME'], r['OPTIONS'], settings.DATABASE_ROUTERS]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    host, user, name, options, routers = json.loads(result.stdout.strip().splitlines()[-1])
    assert (host, user, name) == ("replica.example", "reader", "oms")
    assert options["connect_timeout"] == 2
    assert routers == ["config.replica.ReplicaRouter"]
