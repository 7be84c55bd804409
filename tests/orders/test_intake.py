"""Group commit of POST /api/orders (orders/intake.py): many orders, one commit, each its own answer."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from eventstore.models import OutboxMessage, StoredEvent
from orders import handlers, idempotency, intake
from orders.models import IdempotencyRecord
from sagas.models import SagaInstance, SagaStepAttempt

BODY = {"items": [{"product_id": "SKU-G", "quantity": 1}], "payment": {"method": "card", "token": "tok_ok"}}
WAIT = 30.0


@pytest.fixture(autouse=True)
def products(db: None) -> None:
    from inventory.public import upsert_product

    upsert_product(product_id="SKU-G", name="Group", price=Decimal("2.00"), available=10_000)
    upsert_product(product_id="SKU-H", name="Hold", price=Decimal("3.00"), available=10_000)


def placement(customer: str = "alice", *, product: str = "SKU-G", key: str | None = None) -> intake.Placement:
    keyed = None
    if key is not None:
        keyed = idempotency.KeyedRequest(user_id=customer, key=key, request_hash=f"hash-of-{product}")
    return intake.Placement(
        customer_id=customer,
        lines=(handlers.RequestedLine(product, 1),),
        payment={"method": "card", "token": "tok_ok"},
        key=keyed,
    )


def orders_created() -> int:
    return StoredEvent.objects.filter(event_type="OrderCreated").count()


@pytest.mark.django_db
def test_a_batch_costs_the_same_statements_for_5_orders_as_for_50() -> None:
    def statements(size: int) -> int:
        batch = [placement(f"c{i}", key=f"k-{size}-{i}") for i in range(size)]
        with CaptureQueriesContext(connection) as captured:
            outcomes = intake.place_batch(batch)
        assert all(isinstance(o, intake.Answer) and o.status == 202 for o in outcomes), outcomes
        return len(captured.captured_queries)

    small, large = statements(5), statements(50)
    assert small == large
    # catalogue, key locks, key rows, then one INSERT each: events, outbox, saga, attempts, keys
    # (plus the unit's savepoint and its release inside the test's transaction).
    assert large <= 10, large
    assert orders_created() == 55
    assert SagaInstance.objects.count() == 55
    assert SagaStepAttempt.objects.filter(command="ReserveInventory").count() == 55
    assert IdempotencyRecord.objects.count() == 55
    assert OutboxMessage.objects.filter(routing_key__contains="ReserveInventory").count() == 55


@pytest.mark.django_db
def test_a_rejected_order_in_a_batch_is_its_own_answer_and_its_neighbours_are_placed() -> None:
    outcomes = intake.place_batch([placement("a"), placement("b", product="SKU-NOPE"), placement("c")])
    assert isinstance(outcomes[0], intake.Answer) and outcomes[0].status == 202
    assert isinstance(outcomes[1], handlers.UnknownProducts) and outcomes[1].indexes == [0]
    assert isinstance(outcomes[2], intake.Answer) and outcomes[2].status == 202
    assert orders_created() == 2


@pytest.mark.django_db
def test_a_failing_order_rolls_the_batch_back_and_the_others_are_placed_one_by_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = handlers.place_order
    calls: list[str] = []

    def poisoned(**kwargs: Any) -> Any:
        calls.append(kwargs["customer_id"])
        if kwargs["customer_id"] == "poison":
            raise RuntimeError("boom")
        return original(**kwargs)

    monkeypatch.setattr(handlers, "place_order", poisoned)
    outcomes = intake.place_batch([placement("a"), placement("poison"), placement("c")])

    assert isinstance(outcomes[0], intake.Answer) and isinstance(outcomes[2], intake.Answer)
    assert isinstance(outcomes[1], RuntimeError)
    # Together first (a, poison), then one by one (a, poison, c).
    assert calls == ["a", "poison", "a", "poison", "c"]
    assert orders_created() == 2
    placed = {o.body["order_id"] for o in outcomes if isinstance(o, intake.Answer)}
    created = StoredEvent.objects.filter(event_type="OrderCreated").values_list("aggregate_id", flat=True)
    assert set(created) == placed


@pytest.mark.django_db
def test_one_key_twice_in_a_batch_replays_and_another_body_with_it_is_refused() -> None:
    first, again = placement("alice", key="k-dup"), placement("alice", key="k-dup")
    other = placement("alice", product="SKU-H", key="k-dup")
    outcomes = intake.place_batch([first, again, other, placement("bob", key="k-dup")])

    assert isinstance(outcomes[0], intake.Answer) and outcomes[0].status == 202
    assert outcomes[1] == outcomes[0]
    assert isinstance(outcomes[2], idempotency.KeyReusedWithOtherRequest)
    assert isinstance(outcomes[3], intake.Answer) and outcomes[3] != outcomes[0]  # bob's key is his own
    assert orders_created() == 2
    assert IdempotencyRecord.objects.filter(key="k-dup").count() == 2


@pytest.mark.django_db
def test_a_key_rejected_with_its_order_is_free_for_the_next_in_the_same_batch() -> None:
    outcomes = intake.place_batch(
        [placement("alice", product="SKU-NOPE", key="k-free"), placement("alice", key="k-free")]
    )
    assert isinstance(outcomes[0], handlers.UnknownProducts)
    assert isinstance(outcomes[1], intake.Answer) and outcomes[1].status == 202
    assert IdempotencyRecord.objects.get(key="k-free").response_body == outcomes[1].body


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_are_committed_together_and_each_answered_after_the_commit(
    token_for, settings
) -> None:
    settings.ORDER_BATCH_MAX = 8
    settings.ORDER_BATCH_WAIT_MS = 5000  # the batch closes when all eight have joined
    token = token_for("alice")
    barrier = threading.Barrier(8)
    answers: list[tuple[int, dict, int]] = []
    lock = threading.Lock()

    def post() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        try:
            barrier.wait(WAIT)
            response = client.post("/api/orders", BODY, format="json")
            # Answered only after the commit: a fresh connection already sees the order.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM event_store WHERE aggregate_id = %s", [response.json()["order_id"]]
                )
                seen = cursor.fetchone()[0]
            with lock:
                answers.append((response.status_code, response.json(), seen))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)

    assert [status for status, _, _ in answers] == [202] * 8
    assert all(seen == 1 for _, _, seen in answers)
    assert len({body["order_id"] for _, body, _ in answers}) == 8
    with connection.cursor() as cursor:
        # Rows written by one transaction share its id (xmin): eight orders, one commit.
        cursor.execute("SELECT count(DISTINCT xmin::text) FROM event_store WHERE event_type = 'OrderCreated'")
        assert cursor.fetchone()[0] == 1
        cursor.execute("SELECT count(DISTINCT xmin::text) FROM saga_instance")
        assert cursor.fetchone()[0] == 1


@pytest.mark.django_db(transaction=True)
def test_a_batch_closes_at_its_size_limit(settings) -> None:
    settings.ORDER_BATCH_MAX = 2
    settings.ORDER_BATCH_WAIT_MS = 5000
    group = intake.GroupCommit()
    outcomes: list[Any] = []
    barrier = threading.Barrier(4)

    def submit(customer: str) -> None:
        try:
            barrier.wait(WAIT)
            outcomes.append(group.submit(placement(customer)))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=submit, args=(f"c{i}",)) for i in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert time.monotonic() - started < 4  # both batches closed full, neither waited its 5 s
    assert [o.status for o in outcomes] == [202] * 4
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(DISTINCT xmin::text) FROM event_store WHERE event_type = 'OrderCreated'")
        assert cursor.fetchone()[0] == 2


def test_on_an_event_loop_the_open_batch_grows_while_the_writers_are_busy(settings) -> None:
    """No database: the writer is a stand-in that records each batch and waits to be released."""
    import asyncio

    settings.ORDER_BATCH_WRITERS = 1
    settings.ORDER_BATCH_WAIT_MS = 1
    settings.ORDER_BATCH_MAX = 100
    written: list[int] = []

    async def scenario() -> list[Any]:
        release = asyncio.Event()

        async def write(function: Any, placements: list[intake.Placement]) -> list[intake.Outcome]:
            written.append(len(placements))
            await release.wait()
            return [intake.Answer(202, {"order_id": p.customer_id}) for p in placements]

        group = intake.AsyncGroupCommit(asyncio.get_running_loop(), write)
        first = asyncio.ensure_future(group.submit(placement("c0")))
        await asyncio.sleep(0.05)  # the first batch (one order) is being written
        later = [asyncio.ensure_future(group.submit(placement(f"c{i}"))) for i in range(1, 8)]
        await asyncio.sleep(0.05)  # long past the wait: the one writer is still busy
        assert written == [1]
        release.set()
        return await asyncio.gather(first, *later)

    answers = asyncio.run(scenario())
    assert [a.body["order_id"] for a in answers] == [f"c{i}" for i in range(8)]
    # The seven arrived while the writer was busy and went together, not as seven batches.
    assert written == [1, 7]
