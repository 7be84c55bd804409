"""GET /api/orders/{order_id}/timeline: the saga's steps and the payment's events, with times."""

from __future__ import annotations

import pytest

from .conftest import place, settle

pytestmark = pytest.mark.django_db(transaction=True)


def _timeline(client, order_id: str) -> dict:  # type: ignore[no-untyped-def]
    response = client.get(f"/api/orders/{order_id}/timeline")
    assert response.status_code == 200, response.content
    return response.json()


def test_a_completed_order_shows_each_step_and_its_capture(alice_client, stocked) -> None:
    stocked("SKU-T", 5, price="20.00")
    order_id = place(alice_client, [("SKU-T", 2)])
    settle()
    timeline = _timeline(alice_client, order_id)
    assert (timeline["order_id"], timeline["status"], timeline["failure_reason"]) == (
        order_id,
        "COMPLETED",
        None,
    )
    assert [(s["step"], s["attempt"], s["outcome"], s["answer"]) for s in timeline["steps"]] == [
        ("RESERVE_INVENTORY", 1, "SUCCEEDED", "InventoryReserved"),
        ("PROCESS_PAYMENT", 1, "SUCCEEDED", "PaymentProcessed"),
        ("CONFIRM_INVENTORY", 1, "SUCCEEDED", "InventoryConfirmed"),
    ]
    for step in timeline["steps"]:
        assert step["sent_at"].endswith("Z") and step["answered_at"] >= step["sent_at"]
    assert timeline["transitions"][-1]["to_state"] == "COMPLETED"
    assert [t["at"] for t in timeline["transitions"]] == sorted(t["at"] for t in timeline["transitions"])
    assert [e["type"] for e in timeline["payment"]] == [
        "PaymentRequested",
        "PaymentAttempted",
        "PaymentProcessed",
    ]
    assert timeline["payment"][1] | {"at": None} == {
        "at": None,
        "type": "PaymentAttempted",
        "attempt": 1,
        "outcome": "captured",
        "error": "",
    }
    assert timeline["payment"][2]["amount"] == "40.00"
    # The card token and the gateway's keys are not the customer's business.
    assert "tok_ok" not in str(timeline) and "idempotency" not in str(timeline)


def test_a_declined_card_shows_the_decline_and_the_release(alice_client, stocked) -> None:
    stocked("SKU-TD", 5)
    order_id = place(alice_client, [("SKU-TD", 1)], token="tok_declined")
    settle()
    timeline = _timeline(alice_client, order_id)
    assert (timeline["status"], timeline["failure_reason"]) == ("FAILED", "PAYMENT_DECLINED")
    pay = next(s for s in timeline["steps"] if s["step"] == "PROCESS_PAYMENT")
    assert (pay["outcome"], pay["answer"]) == ("FAILED", "PaymentFailed")
    assert any(s["step"] == "RELEASE_INVENTORY" and s["outcome"] == "SUCCEEDED" for s in timeline["steps"])
    failed = timeline["payment"][-1]
    assert (failed["type"], failed["reason"]) == ("PaymentFailed", "PAYMENT_DECLINED")


def test_a_cancelled_completed_order_shows_its_refund(alice_client, stocked) -> None:
    stocked("SKU-TC", 5, price="15.00")
    order_id = place(alice_client, [("SKU-TC", 1)])
    settle()
    assert alice_client.delete(f"/api/orders/{order_id}").status_code == 202
    settle()
    timeline = _timeline(alice_client, order_id)
    assert timeline["status"] == "CANCELLED"
    refunded = [e for e in timeline["payment"] if e["type"] == "PaymentRefunded"]
    assert [(e["amount"], e["refunded_amount"]) for e in refunded] == [("15.00", "15.00")]
    assert any(s["step"] == "REFUND_PAYMENT" and s["outcome"] == "SUCCEEDED" for s in timeline["steps"])


def test_before_any_step_the_lists_are_short_not_missing(alice_client, bob_client, stocked) -> None:
    stocked("SKU-TP", 5)
    order_id = place(alice_client, [("SKU-TP", 1)])
    timeline = _timeline(alice_client, order_id)
    assert timeline["status"] == "PENDING" and timeline["payment"] == []
    assert [s["step"] for s in timeline["steps"]] == ["RESERVE_INVENTORY"]
    # another customer's order is a 404, like a missing one
    assert bob_client.get(f"/api/orders/{order_id}/timeline").status_code == 404
