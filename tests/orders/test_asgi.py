"""The thin POST /api/orders endpoint (orders/asgi.py) answers exactly as the DRF view does.

Each request goes through both transports; status, body and headers must match (the order id,
and so the Location and Content-Length of a 202, aside).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.fixtures.api import AsgiClient

pytestmark = pytest.mark.django_db

BODY = {"items": [{"product_id": "SKU-T", "quantity": 1}], "payment": {"method": "card", "token": "tok_ok"}}
# Headers that differ between two correct answers (the server's own, or the new order's id).
_VARYING = {"date", "server", "location", "content-length"}


@pytest.fixture(autouse=True)
def product(db: None) -> None:
    from inventory.public import upsert_product

    upsert_product(product_id="SKU-T", name="Thin", price=Decimal("5.00"), available=100)


def _both(token: str | None, data: Any = BODY, **extra: Any) -> tuple[Any, Any]:
    drf = APIClient()
    if token:
        drf.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    thin = AsgiClient(token)
    fmt = None if "content_type" in extra else "json"
    return drf.post("/api/orders", data, format=fmt, **extra), thin.post(
        "/api/orders", data, format=fmt, **extra
    )


def _headers(response: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in response.items() if name.lower() not in _VARYING}


def _assert_same(drf: Any, thin: Any) -> None:
    assert thin.status_code == drf.status_code, (drf.content, thin.content)
    assert _headers(thin) == _headers(drf)
    if drf.status_code == 202:
        assert set(thin.json()) == set(drf.json()) == {"order_id", "status"}
        assert thin["Location"] == f"/api/orders/{thin.json()['order_id']}"
    else:
        assert thin.json() == drf.json()


@pytest.mark.parametrize(
    ("data", "extra"),
    [
        (BODY, {}),
        ({"items": []}, {}),
        ({**BODY, "items": [{"product_id": "SKU-NOPE", "quantity": 1}]}, {}),
        ('{"items": [1,}', {"content_type": "application/json"}),
        ('{"a": 1, "a": 2}', {"content_type": "application/json"}),
        ("items=1", {"content_type": "application/x-www-form-urlencoded"}),
        (BODY, {"HTTP_ACCEPT": "text/html"}),
        (BODY, {"HTTP_IDEMPOTENCY_KEY": "bad key with spaces"}),
    ],
    ids=[
        "accepted",
        "invalid",
        "unknown-product",
        "broken-json",
        "duplicate-key",
        "form",
        "not-acceptable",
        "bad-key",
    ],
)
def test_the_same_answer_through_both(token_for, data, extra) -> None:
    _assert_same(*_both(token_for("alice"), data, **extra))


def test_unauthenticated_and_bad_tokens_are_the_same_401(token_for) -> None:
    _assert_same(*_both(None))
    _assert_same(*_both("not-a-token"))


def test_an_admin_without_customer_and_an_admin_naming_one(token_for) -> None:
    _assert_same(*_both(token_for("admin")))
    _assert_same(*_both(token_for("admin"), {**BODY, "customer_id": "bob"}))


def test_idempotency_answers_are_the_same(token_for) -> None:
    token = token_for("alice")
    drf, thin = _both(token, HTTP_IDEMPOTENCY_KEY="k-drf")
    # One key of one user: the thin endpoint replays what the view answered first, and back.
    assert (thin.status_code, thin.json()) == (202, drf.json())
    _assert_same(*_both(token, HTTP_IDEMPOTENCY_KEY="k-drf"))
    other = {**BODY, "items": [{"product_id": "SKU-T", "quantity": 2}]}
    _assert_same(*_both(token, other, HTTP_IDEMPOTENCY_KEY="k-drf"))


def test_a_declared_body_over_the_limit_is_the_same_413(token_for, settings) -> None:
    settings.API_MAX_BODY_BYTES = 50
    _assert_same(*_both(token_for("alice")))


def test_throttled_is_the_same_429(token_for, settings) -> None:
    settings.API_THROTTLE_USER = "1/min"
    token = token_for("alice")
    first = AsgiClient(token).post("/api/orders", BODY, format="json")
    assert first.status_code == 202
    drf, thin = _both(token)
    assert drf.status_code == 429
    _assert_same(drf, thin)


def test_other_methods_and_paths_stay_on_django(token_for) -> None:
    client = AsgiClient(token_for("alice"))
    assert client.get("/api/orders").status_code == 200  # the query side's list
    assert client.put("/api/orders", BODY, format="json").status_code == 405
    assert client.post("/api/orders/", BODY, format="json").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_as_deployed_checks_and_writes_run_on_their_own_threads_and_batch_together(
    token_for, settings
) -> None:
    """The stack's configuration: checks on a pool, batches on writer threads with their own connections."""
    import asyncio

    import httpx
    from django.db import connection

    from orders.asgi import PlaceOrderEndpoint

    settings.ORDER_INTAKE_THREADS = 4
    settings.ORDER_BATCH_WRITERS = 1
    settings.ORDER_BATCH_WAIT_MS = 200  # all twelve arrive within one wait
    endpoint = PlaceOrderEndpoint()
    token = token_for("alice")

    async def place_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=endpoint)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            headers = {"Authorization": f"Bearer {token}"}
            return await asyncio.gather(
                *(client.post("/api/orders", json=BODY, headers=headers) for _ in range(12))
            )

    responses = asyncio.run(place_all())
    assert [r.status_code for r in responses] == [202] * 12
    assert len({r.json()["order_id"] for r in responses}) == 12
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(DISTINCT xmin::text) FROM event_store WHERE event_type = 'OrderCreated'"
        )
        orders, commits = cursor.fetchone()
    assert orders == 12
    assert commits <= 2  # batched: the twelve orders in one or two commits
