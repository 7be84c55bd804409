"""Readiness follows the deploy's one-shot step: 503 on a fresh database and a bare vhost, 200
once ``manage.py migrate`` and ``manage.py declare_topology`` ran (real PostgreSQL and RabbitMQ).

The probe checks in threads of their own, each opening a new connection from
``connections.settings``: pointing ``NAME`` there at a database with no table is what a web
process started before the migration Job sees.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import quote, unquote, urlsplit

import psycopg
import pytest
from django.conf import settings
from django.db import connection, connections
from django.test import override_settings

from tests.fixtures.rabbitmq import add_vhost, delete_vhost
from tests.fixtures.stack import ROOT, subprocess_env

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _patient_checks(monkeypatch) -> None:
    """What these tests read is each check's verdict, not how fast it came: on a loaded machine
    a new connection to a fresh database can take longer than the probe's 1 s, and a check that
    ran out of time says "no answer within 1s" instead of what it found."""
    from config import health

    monkeypatch.setattr(health, "run_checks", functools.partial(health.run_checks, timeout=15.0))


def _admin_conninfo() -> str:
    db = connection.settings_dict
    return psycopg.conninfo.make_conninfo(
        host=db.get("HOST") or "127.0.0.1",
        port=str(db.get("PORT") or 5432),
        user=db.get("USER") or "",
        password=db.get("PASSWORD") or None,
        dbname="postgres",
    )


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """An empty database beside this run's test database (named after it: no clash between runs)."""
    name = f"{connection.settings_dict['NAME']}_fresh"
    with psycopg.connect(_admin_conninfo(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        connections.close_all()
        with psycopg.connect(_admin_conninfo(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def bare_vhost() -> Iterator[str]:
    """A RabbitMQ vhost with nothing declared; yields its BROKER_URL."""
    parts = urlsplit(settings.BROKER_URL)
    vhost = f"{unquote(parts.path.lstrip('/')) or 'oms'}_bare"
    delete_vhost(vhost)
    add_vhost(vhost, parts.username or "guest")
    try:
        yield parts._replace(path="/" + quote(vhost, safe="")).geturl()
    finally:
        delete_vhost(vhost)


def _manage(*args: str, database: str, broker_url: str) -> None:
    db = connection.settings_dict
    auth = quote(db.get("USER") or "", safe="")
    url = f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{database}"
    env = subprocess_env(DATABASE_URL=url, BROKER_URL=broker_url)
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_not_ready_until_migrate_and_declare_topology_ran(
    api_client, monkeypatch, fresh_database, bare_vhost
):
    # given a web process whose database has no table and whose vhost has no queue
    monkeypatch.setitem(connections.settings["default"], "NAME", fresh_database)
    with override_settings(BROKER_URL=bare_vhost):
        # when the probe asks, then it is a 503 problem naming both missing steps
        response = api_client.get("/health/ready")
        assert response.status_code == 503
        assert response["Content-Type"].startswith("application/problem+json")
        body = response.json()
        assert body["status"] == 503
        assert body["type"] == "urn:oms:problem:service_unavailable"
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["broker"] == "ok"
        assert body["checks"]["migrations"].startswith("down: ")
        assert body["checks"]["migrations"].endswith("migrations not applied")
        assert body["checks"]["topology"] == "down: exchange oms.events not declared"
        assert "migrations" in body["detail"] and "topology" in body["detail"]
        assert fresh_database not in response.content.decode()  # no names of the set-up leak

        # when the one-shot step migrates, then only the topology is missing
        _manage("migrate", "--noinput", database=fresh_database, broker_url=bare_vhost)
        response = api_client.get("/health/ready")
        assert response.status_code == 503
        assert response.json()["checks"]["migrations"] == "ok"
        assert response.json()["checks"]["topology"].startswith("down: ")

        # when it declares the topology too, then the process is ready
        _manage("declare_topology", database=fresh_database, broker_url=bare_vhost)
        response = api_client.get("/health/ready")
        assert response.status_code == 200, response.content
        assert response.json()["status"] == "ok"
        assert set(response.json()["checks"].values()) == {"ok"}


def test_a_queue_deleted_after_the_declaration_makes_the_process_unready(api_client, bare_vhost):
    # given a declared topology on its own vhost
    from kombu import Connection

    from eventstore.topology import declare_topology, work_queue_name

    with override_settings(BROKER_URL=bare_vhost):
        with Connection(bare_vhost) as broker:
            declare_topology(broker)
        assert api_client.get("/health/ready").status_code == 200

        # when one work queue goes (an operator's mistake, a broker restored without it)
        with Connection(bare_vhost) as broker:
            channel = broker.channel()
            channel.queue_delete(queue=work_queue_name("sagas"))
            channel.close()

        # then the probe names it
        response = api_client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["topology"] == f"down: queue {work_queue_name('sagas')} not declared"
