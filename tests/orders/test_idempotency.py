"""Idempotency-Key never yields two orders (the money-safety issue), however long the first runs.

The first request is held open inside its transaction (a seam in ``handlers.place_order``, on
the real PostgreSQL) while duplicates arrive: they must be answered 409 with Retry-After, never
turned into a second order — also when the first has been running longer than any timeout.
A first request that crashed (its transaction rolled back) leaves nothing behind, so its retry
places the order once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone
from rest_framework.test import APIClient

from eventstore.models import StoredEvent
from orders.models import IdempotencyRecord

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"items": [{"product_id": "SKU-I", "quantity": 1}], "payment": {"method": "card", "token": "tok_ok"}}
WAIT = 30.0  # seconds any condition below may take before the test gives up


@pytest.fixture(autouse=True)
def product(db: None) -> None:
    from inventory.public import upsert_product

    upsert_product(product_id="SKU-I", name="Idem", price=Decimal("3.00"), available=1000)


def post_with_key(client: APIClient, body: dict, key: str) -> Any:
    return client.post("/api/orders", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def orders_created() -> int:
    return StoredEvent.objects.filter(event_type="OrderCreated").count()


class HeldFirstRequest:
    """POST /api/orders in a thread whose first ``place_order`` call waits until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, client: APIClient, key: str) -> None:
        from orders import handlers

        self.entered = threading.Event()
        self.release = threading.Event()
        self.backend_pid: int | None = None
        self.response: Any = None
        self.error: BaseException | None = None
        original = handlers.place_order
        calls = {"n": 0}

        def held(**kwargs: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 1:  # only the first request is held; any other passes through
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    self.backend_pid = cursor.fetchone()[0]
                self.entered.set()
                assert self.release.wait(WAIT), "the test never released the first request"
            return original(**kwargs)

        monkeypatch.setattr(handlers, "place_order", held)
        self.thread = threading.Thread(target=self._run, args=(client, key), daemon=True)

    def _run(self, client: APIClient, key: str) -> None:
        try:
            self.response = client.post("/api/orders", BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)
        except BaseException as exc:  # a crashed request, as the test intends
            self.error = exc
        finally:
            connections.close_all()

    def start(self) -> None:
        self.thread.start()
        assert self.entered.wait(WAIT), "the first request never reached place_order"

    def finish(self) -> None:
        self.release.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[APIClient, str], HeldFirstRequest]]:
    started: list[HeldFirstRequest] = []

    def start(client: APIClient, key: str) -> HeldFirstRequest:
        first = HeldFirstRequest(monkeypatch, client, key)
        first.start()
        started.append(first)
        return first

    yield start
    for first in started:  # never leave a thread blocked, whatever failed
        first.release.set()
        first.thread.join(WAIT)


def _age_key_rows(key: str, by: timedelta) -> None:
    """Let time pass for whatever the first request committed about its key."""
    IdempotencyRecord.objects.filter(key=key).update(created_at=timezone.now() - by)


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    finished = threading.Event()
    deadline = timezone.now() + timedelta(seconds=WAIT)
    while not condition():
        assert timezone.now() < deadline, f"timed out waiting for {what}"
        finished.wait(0.02)


def test_a_duplicate_of_a_request_running_past_the_old_window_gets_409_not_a_second_order(
    alice_client, held
) -> None:
    first = held(alice_client, "k-long")
    # The first request has now been running for two minutes (past the old 60 s takeover).
    _age_key_rows("k-long", timedelta(minutes=2))

    duplicate = alice_client.post("/api/orders", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-long")

    assert duplicate.status_code == 409, duplicate.content
    assert duplicate["Content-Type"] == "application/problem+json"
    assert int(duplicate["Retry-After"]) >= 1
    assert orders_created() == 0  # nothing committed while the first still runs

    first.finish()
    assert first.error is None and first.response.status_code == 202, first.response.content
    replay = alice_client.post("/api/orders", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-long")
    assert (replay.status_code, replay.json()) == (202, first.response.json())
    assert replay["Location"] == first.response["Location"]
    assert orders_created() == 1


def test_a_duplicate_with_another_body_while_the_first_runs_is_409_then_422(alice_client, held) -> None:
    first = held(alice_client, "k-other")
    other = {**BODY, "items": [{"product_id": "SKU-I", "quantity": 2}]}
    # While the first runs nothing of it is committed, its body included: the answer is 409.
    assert post_with_key(alice_client, other, "k-other").status_code == 409
    first.finish()
    assert first.response.status_code == 202
    assert post_with_key(alice_client, other, "k-other").status_code == 422
    assert orders_created() == 1


def test_nothing_about_the_key_is_committed_before_the_order(alice_client, held) -> None:
    first = held(alice_client, "k-atomic")
    assert not IdempotencyRecord.objects.filter(key="k-atomic").exists()
    first.finish()
    record = IdempotencyRecord.objects.get(user_id="alice", key="k-atomic")
    assert record.response_body == first.response.json()


# A process that places an order with an Idempotency-Key and is stopped dead (SIGKILL) inside
# the order's transaction: nothing after that point runs, as in a real crash.
_CRASHING_PROCESS = """
import os, sys, threading
import django
django.setup()
from django.db import connection
from rest_framework.test import APIClient
from orders import handlers

def held(**kwargs):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        print("HELD", cursor.fetchone()[0], flush=True)
    threading.Event().wait()  # until the test kills this process

handlers.place_order = held
client = APIClient()
client.credentials(HTTP_AUTHORIZATION="Bearer " + os.environ["PROBE_TOKEN"])
client.post("/api/orders", {"items": [{"product_id": "SKU-I", "quantity": 1}],
            "payment": {"method": "card", "token": "tok_ok"}}, format="json",
            HTTP_IDEMPOTENCY_KEY="k-crash")
sys.exit("the request returned instead of being killed")
"""


def test_a_first_request_killed_mid_transaction_can_be_retried_and_places_one_order(
    alice_client, token_for
) -> None:
    import signal
    import subprocess
    import sys

    from tests.fixtures.stack import subprocess_env

    process = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_PROCESS],
        env=subprocess_env(PROBE_TOKEN=token_for("alice")),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        seen = []
        for line in process.stdout:  # until the request is inside its transaction (or it died)
            seen.append(line)
            if line.startswith("HELD "):
                break
        assert seen and seen[-1].startswith("HELD "), "".join(seen)
        backend_pid = int(seen[-1].split()[1])
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(WAIT)

    def rolled_back() -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [backend_pid])
            return cursor.fetchone()[0] == 0

    _wait_until(rolled_back, "PostgreSQL to end the killed request's session")
    assert orders_created() == 0

    retry = alice_client.post("/api/orders", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-crash")
    assert retry.status_code == 202, retry.content
    again = alice_client.post("/api/orders", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-crash")
    assert (again.status_code, again.json()) == (202, retry.json())
    assert orders_created() == 1


def test_concurrent_duplicates_place_exactly_one_order(token_for) -> None:
    token = token_for("alice")
    barrier = threading.Barrier(6)
    answers: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def post() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        try:
            barrier.wait(WAIT)
            response = client.post("/api/orders", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-race")
            with lock:
                answers.append((response.status_code, response.json()))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert len(answers) == 6
    assert {status for status, _ in answers} <= {202, 409}
    placed = {body["order_id"] for status, body in answers if status == 202}
    assert len(placed) == 1
    assert orders_created() == 1
