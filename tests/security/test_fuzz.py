"""Schemathesis against the OpenAPI schema (issue 5 §8): no 5xx, every response as documented.

Authenticated as an ADMIN (every operation reachable) and as a USER; bounded examples per
operation. Side effects land in the test database and are rolled back; the saga is not driven
(the bus is not drained), so nothing waits on it.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """As Django's test client does: the app must not close the test's connection (and the
    transaction that isolates the test) at the end of each request."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def _load_schema():
    from config.wsgi import application

    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


schema = _load_schema()


def _call(case, token: str) -> None:
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
    case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])


FUZZ = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@schema.parametrize()
@FUZZ
def test_api_conforms_to_its_schema_as_admin(case, token_for, stocked):
    stocked()
    _call(case, token_for("admin"))


@schema.parametrize()
@FUZZ
def test_api_conforms_to_its_schema_as_user(case, token_for, stocked):
    stocked()
    _call(case, token_for("alice"))
