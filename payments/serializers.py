"""Request and response shapes of the payments context (one validator per input shape).

The ProcessPayment and RefundPayment commands carry the same shapes as the operator's
requests, so both paths validate with these serializers; the API's variants also refuse
unknown members.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from rest_framework import serializers


def _money(*, required: bool = True) -> serializers.DecimalField:
    """Money: up to 12 digits, two decimals, at least 0.01."""
    return serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=Decimal("0.01"), required=required, allow_null=not required
    )


class _RejectUnknownFields(serializers.Serializer):
    """Refuses members it does not know (a typo must not be silently ignored)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
        return super().to_internal_value(data)


class ProcessPaymentInput(serializers.Serializer):
    """``{"order_id","amount","method","token"}`` — the ProcessPayment command's data."""

    order_id = serializers.UUIDField()
    amount = _money()
    method = serializers.CharField(max_length=32)
    token = serializers.CharField(max_length=128)


class ReportPaymentOutcomeInput(serializers.Serializer):
    """``{"order_id"}`` — the ReportPaymentOutcome command's data."""

    order_id = serializers.UUIDField()


class RefundPaymentInput(serializers.Serializer):
    """``{"order_id","amount"?,"reason"?}`` — amount null or absent means everything captured."""

    order_id = serializers.UUIDField()
    amount = _money(required=False)
    reason = serializers.CharField(max_length=200, required=False, allow_blank=True)


class ProcessPaymentRequest(_RejectUnknownFields, ProcessPaymentInput):
    """The body of ``POST /api/payments/process``."""


class RefundPaymentRequest(_RejectUnknownFields, RefundPaymentInput):
    """The body of ``POST /api/payments/refund``."""


class PaymentOutput(serializers.Serializer):
    """The payment as every payments endpoint returns it."""

    payment_id = serializers.CharField()
    order_id = serializers.CharField()
    status = serializers.CharField()
    amount = serializers.CharField()
    refunded_amount = serializers.CharField()
    attempts = serializers.IntegerField()
    captures = serializers.IntegerField()
