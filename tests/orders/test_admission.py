"""Bounded work in progress (orders/admission.py): new orders wait while too many are open."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from config.connections import close_thread_connections
from eventstore.models import StoredEvent
from orders import admission, handlers, intake
from sagas import public as sagas_public
from sagas.models import SagaInstance
from tests.fixtures.api import AsgiClient

BODY = {"items": [{"product_id": "SKU-W", "quantity": 1}], "payment": {"method": "card", "token": "tok_ok"}}


@pytest.fixture(autouse=True)
def product(db: None) -> None:
    from inventory.public import upsert_product

    upsert_product(product_id="SKU-W", name="Bounded", price=Decimal("4.00"), available=10_000)


@pytest.fixture
def bound(settings: Any) -> Any:
    """The bound on, with short holds and counts; the processes' estimates start afresh."""
    settings.ORDER_INTAKE_MAX_OPEN = 2
    settings.ORDER_INTAKE_HOLD_SECONDS = 0.3
    settings.ORDER_INTAKE_RECOUNT_MS = 0
    admission._admission = admission.Admission()
    intake._async_group_commits.clear()  # each event loop's gate is its group commit's
    return settings


def placement(customer: str = "alice") -> intake.Placement:
    return intake.Placement(
        customer_id=customer,
        lines=(handlers.RequestedLine("SKU-W", 1),),
        payment={"method": "card", "token": "tok_ok"},
    )


def placed(count: int, settings: Any) -> list[str]:
    """``count`` orders placed with the bound off (no consumer runs here: their sagas stay open)."""
    limit, settings.ORDER_INTAKE_MAX_OPEN = settings.ORDER_INTAKE_MAX_OPEN, 0
    try:
        outcomes = [intake.place(placement()) for _ in range(count)]
    finally:
        settings.ORDER_INTAKE_MAX_OPEN = limit
    assert all(isinstance(o, intake.Answer) for o in outcomes), outcomes
    return [o.body["order_id"] for o in outcomes]


def _counted(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def orders_created() -> int:
    return StoredEvent.objects.filter(event_type="OrderCreated").count()


@pytest.mark.django_db
def test_the_open_sagas_are_those_neither_terminal_nor_parked(bound) -> None:
    first, second, third = placed(3, bound)
    assert sagas_public.open_saga_count() == 3
    SagaInstance.objects.filter(order_id=first).update(state="COMPLETED")
    SagaInstance.objects.filter(order_id=second).update(needs_attention=True)
    assert sagas_public.open_saga_count() == 1
    SagaInstance.objects.filter(order_id=third).update(state="PAYMENT_PROCESSING")
    assert sagas_public.open_saga_count() == 1


@pytest.mark.django_db
def test_at_the_bound_a_placement_waits_its_hold_then_is_refused_and_records_nothing(bound) -> None:
    first, _ = placed(2, bound)
    before = orders_created()
    held, refused = _counted("oms_orders_held_total"), _counted("oms_orders_refused_busy_total")
    started = time.monotonic()
    outcome = intake.place(placement())
    assert isinstance(outcome, admission.Overloaded)
    assert time.monotonic() - started >= 0.3
    assert outcome.status_code == 503 and outcome.headers == {"Retry-After": "1"}
    assert orders_created() == before
    assert _counted("oms_orders_held_total") == held + 1
    assert _counted("oms_orders_refused_busy_total") == refused + 1
    # One order completes: there is room again.
    SagaInstance.objects.filter(order_id=first).update(state="COMPLETED")
    assert isinstance(intake.place(placement()), intake.Answer)
    assert orders_created() == before + 1


@pytest.mark.django_db
def test_the_bound_off_lets_everything_in(bound) -> None:
    placed(2, bound)
    bound.ORDER_INTAKE_MAX_OPEN = 0
    assert isinstance(intake.place(placement()), intake.Answer)


@pytest.mark.django_db
def test_a_process_counts_its_own_placements_since_its_last_count(bound) -> None:
    """Between two counts its own placements fill the room: no burst gets past the bound."""
    bound.ORDER_INTAKE_RECOUNT_MS = 60_000  # one count, at the first placement
    bound.ORDER_INTAKE_MAX_OPEN = 3
    placed(1, bound)
    assert isinstance(intake.place(placement()), intake.Answer)  # counted 1, admits a 2nd
    assert isinstance(intake.place(placement()), intake.Answer)  # 1 + 1 admitted: a 3rd
    assert isinstance(intake.place(placement()), admission.Overloaded)  # 1 + 2 = 3: full


@pytest.mark.django_db
def test_overloaded_is_the_same_503_problem_through_the_view_and_the_thin_endpoint(bound, token_for) -> None:
    placed(2, bound)
    token = token_for("alice")
    drf = APIClient()
    drf.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    before = orders_created()
    answers = [
        drf.post("/api/orders", BODY, format="json"),
        AsgiClient(token).post("/api/orders", BODY, format="json"),
    ]
    for response in answers:
        assert response.status_code == 503
        assert response["Content-Type"] == "application/problem+json"
        assert response["Retry-After"] == "1"
        assert response.json() == {
            "type": response.json()["type"],
            "title": "Service Unavailable",
            "status": 503,
            "detail": "Too many orders are in progress right now.",
        }
    assert answers[0].json() == answers[1].json()
    assert orders_created() == before


@pytest.mark.django_db(transaction=True)
def test_on_an_event_loop_waiting_placements_are_let_in_in_order_as_room_appears(bound) -> None:
    """Real counts on a thread of their own, as the web worker's writers run them."""
    bound.ORDER_INTAKE_HOLD_SECONDS = 3
    bound.ORDER_INTAKE_RECOUNT_MS = 20
    first, second = placed(2, bound)

    def finish(order_id: str) -> None:
        SagaInstance.objects.filter(order_id=order_id).update(state="COMPLETED")
        close_thread_connections()

    def place(one: intake.Placement) -> None:
        try:
            assert isinstance(intake.place_batch([one])[0], intake.Answer)
        finally:
            close_thread_connections()

    real_count = sagas_public.open_saga_count

    def count() -> int:
        try:
            return real_count()
        finally:
            close_thread_connections()

    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()

        async def run_sync(function: Any, *args: Any) -> Any:
            return await loop.run_in_executor(None, function, *args)

        gate = admission.AsyncAdmission(loop, run_sync)
        let_in: list[str] = []

        async def wait(name: str) -> None:
            try:
                await gate.admit()
            except admission.Overloaded:
                let_in.append(f"{name} refused")
                return
            let_in.append(name)
            try:  # its order, placed for real: its saga is open from then on
                await run_sync(place, placement(name))
            finally:
                gate.finished()

        waiting = [asyncio.ensure_future(wait(name)) for name in ("a", "b", "c")]
        await asyncio.sleep(0.2)
        assert let_in == []  # two open: no room
        await loop.run_in_executor(None, finish, first)
        await asyncio.sleep(0.2)
        assert let_in == ["a"]  # one room, for the first to come
        # "a" placed its order: two are open again.
        await asyncio.sleep(0.2)
        assert let_in == ["a"]
        await loop.run_in_executor(None, finish, second)
        await asyncio.sleep(0.2)
        assert let_in == ["a", "b"]
        await asyncio.gather(*waiting)
        return let_in

    with pytest.MonkeyPatch.context() as patch:
        # The real count, minding the connection of the thread it runs on.
        patch.setattr(sagas_public, "open_saga_count", count)
        assert asyncio.run(scenario()) == ["a", "b", "c refused"]
    assert connection.vendor == "postgresql"
    assert sagas_public.open_saga_count() == 2  # "a" and "b"
