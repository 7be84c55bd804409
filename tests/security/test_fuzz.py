"""Schemathesis against the OpenAPI schema (issues 5 §8 and 12): every response as documented.

Every check schemathesis has runs (its default set): no 5xx, status codes, content types
(errors are ``application/problem+json``), headers, body schemas, auth enforced, schema-valid
data accepted and invalid data rejected. Authenticated as an ADMIN (every operation reachable)
and as a USER; bounded examples per operation. Side effects land in the test database and are
rolled back; the saga is not driven (the bus is not drained), so nothing waits on it.
"""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.generation.meta import CoveragePhaseData, CoverageScenario

# serial: schemathesis gives every operation's test the same node id, and pytest-xdist, which
# schedules `make test`'s parallel part by node id, would run one of each (tests/conftest.py).
pytestmark = [pytest.mark.django_db, pytest.mark.serial]


@pytest.fixture(scope="module", autouse=True)
def _declared_topology() -> None:
    """The broker's topology, as every deployment declares it before serving: GET /health/ready
    is fuzzed too, and answers 503 until the exchanges exist in the suite's vhost (a fresh
    machine's first run has none)."""
    from eventstore.topology import broker_connection, declare_topology

    with broker_connection() as conn:
        declare_topology(conn)


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
# The strict parser refuses NUL anywhere in a body, also in the members an operation ignores
# (which no schema can constrain); the declared text fields say it with their patterns.
schema.config.generation.update(allow_x00=False)

# Rules no schema can state: schema-valid data that also keeps them must be accepted.
NAMED_CUSTOMER = "alice"


def _keep_business_rules(case, stocked, *, admin: bool) -> None:
    """Make a schema-valid (positive) case keep the rules a schema cannot state.

    POST /api/orders: a line names a product of the catalogue, a product appears on one line,
    an ADMIN names the customer, and an Idempotency-Key is not reused with another body (the
    generator repeats its values). GET /api/orders/analytics: ``from`` is not after ``to``,
    at most ten years before it. Without this, the positive-data check would fail on the
    400s and 422s these rules answer.
    """
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    if case.operation.label == "POST /api/orders" and isinstance(case.body, dict):
        for index, item in enumerate(case.body.get("items") or []):
            if isinstance(item, dict):
                item["product_id"] = _in_catalogue(stocked, f"FUZZ-{index:03d}")
        if admin and not case.body.get("customer_id"):
            case.body["customer_id"] = NAMED_CUSTOMER
        if case.headers and "Idempotency-Key" in case.headers:
            case.headers["Idempotency-Key"] = f"fuzz-{uuid.uuid4()}"
    if case.operation.label == "GET /api/orders/analytics" and case.query:
        start, end = _day(case.query.get("from")), _day(case.query.get("to"))
        if start:
            end = end or start  # ``to`` defaults to today
            start, end = min(start, end), max(start, end)
            start = max(start, end - timedelta(days=3660))
            case.query["from"], case.query["to"] = start.isoformat(), end.isoformat()
    if isinstance(case.body, dict):
        case.body = _within_parser_limits(case.body)


def _within_parser_limits(value: object) -> object:
    """The strict parser refuses integers over 30 digits in any member, also in one the
    operation ignores (which no schema can constrain): a positive case keeps under it."""
    if isinstance(value, dict):
        return {key: _within_parser_limits(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_within_parser_limits(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and len(str(abs(value))) > 30:
        return 10**30 - 1 if value > 0 else -(10**30 - 1)
    return value


def _day(value: object) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) and value else None
    except ValueError:
        return None


def _in_catalogue(stocked, product_id: str) -> str:
    """``product_id``, stocked once per test: a test's examples share its transaction, and the
    ``stocked`` factory is made anew for each test, so it remembers what it stocked."""
    done = stocked.__dict__.setdefault("fuzz_stocked", set())
    if product_id not in done:
        stocked(product_id)
        done.add(product_id)
    return product_id


def _call(case, token: str) -> None:
    """Send ``case`` with the token as explicit credentials, then run every check.

    Passed as ``headers`` (not into the case), schemathesis knows them for credentials: its
    auth check also sends the request without them and with bad ones and expects a 401. A case
    generated to lack the Authorization header is sent without it, for the same reason.
    """
    if _drops_credentials(case):
        case.call_and_validate()
    else:
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"})


def _drops_credentials(case) -> bool:
    data = case.meta.phase.data if case.meta is not None else None
    return (
        isinstance(data, CoveragePhaseData)
        and data.scenario == CoverageScenario.MISSING_PARAMETER
        and (data.parameter or "").lower() == "authorization"
    )


FUZZ = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@schema.parametrize()
@FUZZ
def test_api_conforms_to_its_schema_as_admin(case, token_for, stocked):
    stocked()
    _keep_business_rules(case, stocked, admin=True)
    _call(case, token_for("admin"))


@schema.parametrize()
@FUZZ
def test_api_conforms_to_its_schema_as_user(case, token_for, stocked):
    stocked()
    _keep_business_rules(case, stocked, admin=False)
    _call(case, token_for("alice"))
