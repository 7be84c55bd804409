"""Request and response shapes of the payments context (one validator per input shape).

The ProcessPayment and RefundPayment commands carry the same shapes as the operator's
requests, so both paths validate with these serializers; the API's variants also refuse
unknown members.
"""

from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers

from config.fields import MoneyField, RejectUnknownFields, StrictCharField, StrictUUIDField

from .domain import PaymentStatus


def _money(*, required: bool = True) -> MoneyField:
    """Money: a string of up to 12 digits, two decimals, at least 0.01."""
    return MoneyField(
        max_digits=12, decimal_places=2, min_value=Decimal("0.01"), required=required, allow_null=not required
    )


class _Charge(serializers.Serializer):
    """``{"order_id","amount","method","token"}`` — a charge, as the operator asks for one."""

    order_id = StrictUUIDField()
    amount = _money()
    method = StrictCharField(max_length=32)
    token = StrictCharField(max_length=128)


class ProcessPaymentInput(_Charge):
    """The ProcessPayment command's data: a charge and whose order it is.

    ``customer_id`` is optional: commands queued before the saga sent it still run (the
    payment's owner is then the one recorded for the order, if any).
    """

    customer_id = StrictCharField(max_length=64, required=False, allow_blank=True)


class ReportPaymentOutcomeInput(serializers.Serializer):
    """``{"order_id"}`` — the ReportPaymentOutcome command's data."""

    order_id = StrictUUIDField()


class RefundPaymentInput(serializers.Serializer):
    """``{"order_id","amount"?,"reason"?}`` — amount null or absent means everything captured."""

    order_id = StrictUUIDField()
    amount = _money(required=False)
    reason = StrictCharField(max_length=200, required=False, allow_blank=True)


class ProcessPaymentRequest(RejectUnknownFields, _Charge):
    """The body of ``POST /api/payments/process`` (the customer is the order's, never the caller's say)."""


class RefundPaymentRequest(RejectUnknownFields, RefundPaymentInput):
    """The body of ``POST /api/payments/refund``."""


class PaymentOutput(serializers.Serializer):
    """The payment as every payments endpoint returns it."""

    payment_id = serializers.CharField()
    order_id = serializers.CharField()
    status = serializers.ChoiceField(choices=[status.value for status in PaymentStatus])
    amount = serializers.CharField()
    refunded_amount = serializers.CharField()
    attempts = serializers.IntegerField()
    captures = serializers.IntegerField()
