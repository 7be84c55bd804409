"""Request and response shapes of the orders API (docs/api.md "Placing an order"); no business rules here."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from config.fields import StrictCharField, StrictRegexField
from sagas.public import SAGA_STATES, SAGA_STEPS

from . import domain

PRODUCT_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
MAX_LINES = 100
# Why an order failed (OrderOutput.failure_reason), in a stable order for the schema's enum.
FAILURE_REASONS = tuple(sorted(domain.FAILURE_REASONS))


class StrictIntegerField(serializers.IntegerField):
    """An integer given as a JSON number: no strings, no booleans, no fractions."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class OrderLineInput(serializers.Serializer):
    product_id = StrictRegexField(PRODUCT_ID_PATTERN, max_length=64)
    quantity = StrictIntegerField(min_value=1, max_value=1000)


class PaymentInput(serializers.Serializer):
    method = serializers.ChoiceField(choices=["card"])
    token = StrictCharField(min_length=1, max_length=128)


class PlaceOrderInput(serializers.Serializer):
    """POST /api/orders."""

    # ListSerializer takes max_length (the schema's maxItems); the stubs miss it.
    items = OrderLineInput(many=True, allow_empty=False, max_length=MAX_LINES)  # type: ignore[call-arg]
    payment = PaymentInput()
    customer_id = StrictCharField(min_length=1, max_length=64, required=False, allow_null=True)

    def validate_items(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen: set[str] = set()
        for item in items:
            if item["product_id"] in seen:
                raise serializers.ValidationError(
                    f"product {item['product_id']} appears on more than one line"
                )
            seen.add(item["product_id"])
        return items


class ChangeStatusInput(serializers.Serializer):
    """PUT /api/orders/{order_id}/status."""

    status = serializers.ChoiceField(choices=list(domain.STATUSES))
    reason = StrictCharField(max_length=500, required=False, allow_blank=True, default="")


class OrderAccepted(serializers.Serializer):
    order_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=domain.STATUSES)


class OrderLineOutput(serializers.Serializer):
    product_id = serializers.CharField()
    product_name = serializers.CharField()
    quantity = serializers.IntegerField()
    price = serializers.CharField()


class SagaOutput(serializers.Serializer):
    state = serializers.ChoiceField(choices=SAGA_STATES)
    step = serializers.ChoiceField(
        choices=SAGA_STEPS, allow_null=True, help_text="The command the saga waits an answer for"
    )
    attempts = serializers.IntegerField()
    deadline = serializers.CharField(allow_null=True)
    needs_attention = serializers.BooleanField()


class OrderOutput(serializers.Serializer):
    """GET /api/orders/{order_id}."""

    order_id = serializers.UUIDField()
    customer_id = serializers.CharField()
    status = serializers.ChoiceField(choices=domain.STATUSES)
    total_amount = serializers.CharField()
    items = OrderLineOutput(many=True)
    saga = SagaOutput(allow_null=True)
    failure_reason = serializers.ChoiceField(choices=FAILURE_REASONS, allow_null=True)
    created_at = serializers.CharField()
    updated_at = serializers.CharField()
    version = serializers.IntegerField()


class SagaStepOutput(serializers.Serializer):
    step = serializers.CharField()
    command = serializers.CharField()
    attempt = serializers.IntegerField()
    sent_at = serializers.CharField()
    outcome = serializers.CharField()
    answered_at = serializers.CharField(allow_null=True)
    answer = serializers.CharField(allow_blank=True)
    error = serializers.CharField(allow_blank=True)


class SagaTransitionOutput(serializers.Serializer):
    at = serializers.CharField()
    from_state = serializers.CharField()
    to_state = serializers.CharField()
    step = serializers.CharField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)


class PaymentEventOutput(serializers.Serializer):
    """One event of the payment; the other members depend on ``type``."""

    at = serializers.CharField()
    type = serializers.CharField()
    attempt = serializers.IntegerField(required=False)
    attempts = serializers.IntegerField(required=False)
    outcome = serializers.CharField(required=False)
    amount = serializers.CharField(required=False, allow_null=True)
    refunded_amount = serializers.CharField(required=False)
    reason = serializers.CharField(required=False)
    error = serializers.CharField(required=False, allow_blank=True)


class OrderTimelineOutput(serializers.Serializer):
    """GET /api/orders/{order_id}/timeline."""

    order_id = serializers.UUIDField()
    status = serializers.CharField()
    failure_reason = serializers.CharField(allow_null=True)
    created_at = serializers.CharField()
    updated_at = serializers.CharField()
    steps = SagaStepOutput(many=True)
    transitions = SagaTransitionOutput(many=True)
    payment = PaymentEventOutput(many=True)


def order_body(order: domain.Order, saga: dict[str, Any] | None) -> dict[str, Any]:
    """The response body of GET /api/orders/{order_id}."""
    return {
        "order_id": order.order_id,
        "customer_id": order.customer_id,
        "status": order.status,
        "total_amount": order.total_amount,
        "items": order.items,
        "saga": saga,
        "failure_reason": order.failure_reason,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "version": order.version,
    }
