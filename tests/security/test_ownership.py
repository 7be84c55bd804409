"""Roles and ownership on every endpoint (issue 5 §2): one table, every /api/ route by actor.

Actors: ``anon`` (no token), ``owner`` (alice, whose resources the rows use), ``other`` (bob, a
USER who does not own them) and ``admin``. Another customer's order, payment or order list is
a 404 exactly like a missing one. The URL conf is read programmatically: a route added to the
API without a row here fails ``test_every_api_route_is_in_the_table``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from tests.fixtures.deadletters import probe_dead_letter

from .conftest import PRODUCT, assert_problem

pytestmark = pytest.mark.django_db

ACTORS = ("anon", "owner", "other", "admin")


@dataclass
class World:
    """What a row needs: clients per actor and ways to make fresh resources of alice."""

    clients: dict[str, APIClient]
    place: Callable[..., str]

    def alice_order(self) -> str:
        return self.place(self.clients["owner"])

    def captured_order(self) -> str:
        order_id = self.alice_order()
        response = self.clients["admin"].post("/api/payments/process", _charge(order_id), format="json")
        assert response.status_code == 200, response.content
        return order_id

    def held_reservation(self) -> str:
        order_id = str(uuid.uuid4())
        response = self.clients["admin"].post("/api/inventory/reserve", _reserve(order_id), format="json")
        assert response.status_code == 200, response.content
        return order_id

    def refresh_token(self) -> str:
        response = APIClient().post(
            "/api/auth/token", {"username": "alice", "password": settings.DEMO_PASSWORD}, format="json"
        )
        return response.json()["refresh"]


def _charge(order_id: str) -> dict[str, str]:
    return {"order_id": order_id, "amount": "12.50", "method": "card", "token": "tok_ok"}


def _reserve(order_id: str) -> dict[str, Any]:
    return {"order_id": order_id, "items": [{"product_id": PRODUCT, "quantity": 1}]}


def _with_payment(world: World) -> str:
    """An order of alice with a recorded (pending) payment, as the saga would leave it."""
    from django.db import transaction

    from payments.handlers import request_payment

    order_id = world.alice_order()
    with transaction.atomic():
        request_payment(
            order_id=order_id,
            amount=Decimal("12.50"),
            method="card",
            token="tok_ok",
            customer_id="alice",
            command_id=str(uuid.uuid4()),
            strict=False,
        )
    return order_id


# A request builder: World -> (path, body). Statuses per actor: anon, owner, other, admin.
Request = Callable[[World], tuple[str, Any]]
USER_ONLY_OWN = {"anon": 401, "owner": 200, "other": 404, "admin": 200}
ANY_USER = {"anon": 401, "owner": 200, "other": 200, "admin": 200}
ADMIN_ONLY_200 = {"anon": 401, "owner": 403, "other": 403, "admin": 200}
PUBLIC_200 = {"anon": 200, "owner": 200, "other": 200, "admin": 200}

TABLE: dict[tuple[str, str], tuple[Request, dict[str, int]]] = {
    # --- auth, schema, docs: public ---
    ("POST", "api/auth/token"): (
        lambda w: ("/api/auth/token", {"username": "bob", "password": settings.DEMO_PASSWORD}),
        PUBLIC_200,
    ),
    ("POST", "api/auth/token/refresh"): (
        lambda w: ("/api/auth/token/refresh", {"refresh": w.refresh_token()}),
        PUBLIC_200,
    ),
    ("POST", "api/auth/logout"): (
        lambda w: ("/api/auth/logout", {"refresh": w.refresh_token()}),
        {actor: 205 for actor in ACTORS},
    ),
    ("GET", "api/schema/"): (lambda w: ("/api/schema/", None), PUBLIC_200),
    ("GET", "api/docs/"): (lambda w: ("/api/docs/", None), PUBLIC_200),
    # --- orders, command side ---
    ("POST", "api/orders"): (
        lambda w: (
            "/api/orders",
            {
                "items": [{"product_id": PRODUCT, "quantity": 1}],
                "payment": {"method": "card", "token": "tok_ok"},
                "customer_id": "alice",
            },
        ),
        {"anon": 401, "owner": 202, "other": 202, "admin": 202},
    ),
    ("GET", "api/orders/<uuid:order_id>"): (
        lambda w: (f"/api/orders/{w.alice_order()}", None),
        USER_ONLY_OWN,
    ),
    ("DELETE", "api/orders/<uuid:order_id>"): (
        lambda w: (f"/api/orders/{w.alice_order()}", None),
        {"anon": 401, "owner": 202, "other": 404, "admin": 202},
    ),
    ("GET", "api/orders/<uuid:order_id>/timeline"): (
        lambda w: (f"/api/orders/{w.alice_order()}/timeline", None),
        USER_ONLY_OWN,
    ),
    ("PUT", "api/orders/<uuid:order_id>/status"): (
        lambda w: (f"/api/orders/{w.alice_order()}/status", {"status": "CANCELLED", "reason": "test"}),
        {"anon": 401, "owner": 403, "other": 403, "admin": 202},
    ),
    # --- payments ---
    ("GET", "api/payments/<str:order_id>"): (
        lambda w: (f"/api/payments/{_with_payment(w)}", None),
        USER_ONLY_OWN,
    ),
    ("POST", "api/payments/process"): (
        lambda w: ("/api/payments/process", _charge(w.alice_order())),
        ADMIN_ONLY_200,
    ),
    ("POST", "api/payments/refund"): (
        lambda w: ("/api/payments/refund", {"order_id": w.captured_order()}),
        ADMIN_ONLY_200,
    ),
    # --- inventory ---
    ("GET", "api/inventory"): (lambda w: ("/api/inventory", None), ANY_USER),
    ("GET", "api/inventory/<str:product_id>"): (lambda w: (f"/api/inventory/{PRODUCT}", None), ANY_USER),
    ("PUT", "api/inventory/<str:product_id>"): (
        lambda w: (f"/api/inventory/{PRODUCT}", {"name": "Renamed", "price": "12.50", "available": 10_000}),
        ADMIN_ONLY_200,
    ),
    ("POST", "api/inventory/reserve"): (
        lambda w: ("/api/inventory/reserve", _reserve(str(uuid.uuid4()))),
        ADMIN_ONLY_200,
    ),
    ("POST", "api/inventory/confirm"): (
        lambda w: ("/api/inventory/confirm", {"order_id": w.held_reservation()}),
        ADMIN_ONLY_200,
    ),
    ("POST", "api/inventory/release"): (
        lambda w: ("/api/inventory/release", {"order_id": w.held_reservation()}),
        ADMIN_ONLY_200,
    ),
    # --- queries (read models) ---
    ("GET", "api/orders"): (lambda w: ("/api/orders", None), ANY_USER),
    ("GET", "api/orders/search"): (lambda w: ("/api/orders/search?q=product", None), ANY_USER),
    ("GET", "api/orders/analytics"): (lambda w: ("/api/orders/analytics", None), ADMIN_ONLY_200),
    ("GET", "api/orders/customer/<str:customer_id>"): (
        lambda w: ("/api/orders/customer/alice", None),
        USER_ONLY_OWN,
    ),
    # --- the ops console (docs/console.md): ADMIN only ---
    ("GET", "api/admin/summary"): (lambda w: ("/api/admin/summary", None), ADMIN_ONLY_200),
    ("GET", "api/admin/sagas"): (lambda w: ("/api/admin/sagas", None), ADMIN_ONLY_200),
    ("GET", "api/admin/orders/<uuid:order_id>"): (
        lambda w: (f"/api/admin/orders/{w.alice_order()}", None),
        ADMIN_ONLY_200,
    ),
    ("POST", "api/admin/sagas/<uuid:order_id>/retry-step"): (
        lambda w: (f"/api/admin/sagas/{w.alice_order()}/retry-step", None),
        ADMIN_ONLY_200,
    ),
    ("POST", "api/admin/sagas/<uuid:order_id>/force-compensation"): (
        lambda w: (f"/api/admin/sagas/{w.alice_order()}/force-compensation", {"as_cancellation": True}),
        ADMIN_ONLY_200,
    ),
    ("POST", "api/admin/sagas/<uuid:order_id>/mark-failed"): (
        lambda w: (f"/api/admin/sagas/{w.alice_order()}/mark-failed", None),
        ADMIN_ONLY_200,
    ),
    ("POST", "api/admin/dead-letters/<int:dead_letter_id>/replay"): (
        lambda w: (f"/api/admin/dead-letters/{probe_dead_letter().id}/replay", None),
        ADMIN_ONLY_200,
    ),
}


def api_routes() -> set[tuple[str, str]]:
    """Every (METHOD, route) the URL conf serves under api/ (HEAD and OPTIONS aside)."""
    found: set[tuple[str, str]] = set()

    def walk(patterns: list, prefix: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                route = prefix + str(entry.pattern)
                view = getattr(entry.callback, "view_class", None) or getattr(entry.callback, "cls", None)
                if not route.startswith("api/") or view is None:
                    continue
                for method in getattr(view, "http_method_names", []):
                    if method not in ("head", "options") and hasattr(view, method):
                        found.add((method.upper(), route))

    walk(get_resolver().url_patterns, "")
    return found


def test_every_api_route_is_in_the_table():
    missing = api_routes() - set(TABLE)
    assert not missing, f"routes without an ownership row: {sorted(missing)}"


def test_every_row_of_the_table_is_served():
    # A route of the contract that disappeared from the URL conf is a failure, not a skip.
    gone = set(TABLE) - api_routes()
    assert not gone, f"contract routes the URL conf no longer serves: {sorted(gone)}"


@pytest.fixture
def world(demo_users, token_for, place_order) -> World:
    clients = {"anon": APIClient()}
    for actor, username in (("owner", "alice"), ("other", "bob"), ("admin", "admin")):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(username)}")
        clients[actor] = client
    return World(clients=clients, place=place_order)


# The payment gateway refuses to be called inside a transaction: those rows run transactional.
_CALLS_THE_GATEWAY = {("POST", "api/payments/process"), ("POST", "api/payments/refund")}


def _rows() -> list:
    return [
        pytest.param(
            method,
            route,
            actor,
            id=f"{method} {route} {actor}",
            marks=[pytest.mark.django_db(transaction=True)] if (method, route) in _CALLS_THE_GATEWAY else [],
        )
        for method, route in sorted(TABLE)
        for actor in ACTORS
    ]


@pytest.mark.parametrize(("method", "route", "actor"), _rows())
def test_status_per_endpoint_and_actor(world, settings, method, route, actor):
    settings.PAYMENT_BREAKER_PREFIX = f"test:h10:{uuid.uuid4().hex}"
    assert (method, route) in api_routes(), f"{method} {route} is in the contract but not served"
    build, expected = TABLE[(method, route)]
    path, body = build(world)
    response = world.clients[actor].generic(
        method, path, data=None if body is None else _json(body), content_type="application/json"
    )
    assert response.status_code == expected[actor], (method, path, actor, response.content[:500])
    if expected[actor] >= 400:
        assert_problem(response, expected[actor])


def _json(body: Any) -> str:
    import json

    return json.dumps(body)


def test_another_customers_order_is_indistinguishable_from_a_missing_one(world):
    order_id = world.alice_order()
    bob = world.clients["other"]
    for path in (f"/api/orders/{order_id}", f"/api/payments/{_with_payment(world)}"):
        theirs = bob.get(path)
        missing = bob.get(path.rsplit("/", 1)[0] + f"/{uuid.uuid4()}")
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json() == missing.json()
    # a cancel of someone else's order changes nothing
    assert bob.delete(f"/api/orders/{order_id}").status_code == 404
    assert world.clients["owner"].get(f"/api/orders/{order_id}").json()["status"] == "PENDING"
