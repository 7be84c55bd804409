"""The read model through the real transport: relay → RabbitMQ → the queries consumer."""

from __future__ import annotations

from decimal import Decimal

import pytest

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def test_the_read_model_is_updated_through_rabbitmq(stack, alice_client, admin_client) -> None:
    from inventory.public import upsert_product

    upsert_product(product_id="SKU-R", name="Rabbit Lamp", price=Decimal("9.90"), available=10)
    body = {
        "items": [{"product_id": "SKU-R", "quantity": 2}],
        "payment": {"method": "card", "token": "tok_ok"},
    }
    order_id = alice_client.post("/api/orders", body, format="json").json()["order_id"]

    def completed() -> bool:
        results = alice_client.get("/api/orders").json()["results"]
        return bool(results) and results[0]["status"] == "COMPLETED"

    stack.wait_until(completed, message="the read model shows the order COMPLETED")
    row = alice_client.get("/api/orders").json()["results"][0]
    assert (row["order_id"], row["total_amount"]) == (order_id, "19.80")
    found = alice_client.get("/api/orders/search?q=rabbit").json()["results"]
    assert [r["order_id"] for r in found] == [order_id]
    assert "queries" in stack.consumer.log() or stack.consumer.alive
