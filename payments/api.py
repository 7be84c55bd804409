"""HTTP API of the payments context (docs/api.md "Endpoints"): one thin view per operation.

Payments knows whose payment it is from the saga's ProcessPayment (``customer_id``, kept on
the payment's projection), so a customer's read is checked without asking the orders context.
The operator's charge may come before the saga asks for one: whether the order exists, and
whose it is, is then asked of the order directory the application wires in at start-up
(:func:`payments.public.use_order_directory`); payments itself imports no other context.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.openapi import problem
from config.permissions import IsAdmin, customer_of, is_admin
from config.problems import Conflict, ServiceUnavailable

from .charging import run_charge
from .domain import PaymentConflict
from .handlers import request_payment, request_refund
from .public import order_directory, payment_status
from .recorder import payment_owner
from .refunds import run_refunds
from .serializers import PaymentOutput, ProcessPaymentRequest, RefundPaymentRequest


class PaymentDetailApi(APIView):
    """``GET /api/payments/{order_id}`` — the owner or an ADMIN."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="payments_retrieve",
        summary="Read an order's payment: status, amount, attempts, captures",
        responses={200: PaymentOutput, 404: problem("No payment for this order, or another customer's")},
    )
    def get(self, request: Request, order_id: str) -> Response:
        body = payment_status(order_id) if _is_uuid(order_id) else None
        if body is None or not _may_see(request, order_id):
            raise NotFound("No payment for this order.")
        return Response(body)


class ProcessPaymentApi(APIView):
    """``POST /api/payments/process`` (ADMIN) — charge an order now; 409 once captured."""

    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema(
        operation_id="payments_process",
        summary="Charge an order now (ADMIN)",
        request=ProcessPaymentRequest,
        responses={
            200: PaymentOutput,
            404: problem("No such order"),
            409: problem("The payment is already captured or still running"),
        },
    )
    def post(self, request: Request) -> Response:
        data = _validated(ProcessPaymentRequest, request.data)
        order_id = str(data["order_id"])
        customer_id = _customer_of_order(order_id)
        if customer_id is None:
            raise NotFound("No such order.")
        try:
            with transaction.atomic():
                payment, _ = request_payment(
                    order_id=order_id,
                    amount=data["amount"],
                    method=data["method"],
                    token=data["token"],
                    customer_id=customer_id,
                    command_id="",
                    strict=True,
                )
        except PaymentConflict as exc:
            raise Conflict(str(exc)) from exc
        run_charge(order_id=order_id, payment=payment)
        return Response(payment_status(order_id))


class RefundPaymentApi(APIView):
    """``POST /api/payments/refund`` (ADMIN) — refund part or all; 409 for more than was captured."""

    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema(
        operation_id="payments_refund",
        summary="Refund part or all of a captured payment (ADMIN)",
        request=RefundPaymentRequest,
        responses={
            200: PaymentOutput,
            404: problem("No payment for this order"),
            409: problem("More than was captured and not yet refunded, or nothing captured"),
            503: problem("The payment gateway did not answer; the refund will be retried"),
        },
    )
    def post(self, request: Request) -> Response:
        data = _validated(RefundPaymentRequest, request.data)
        order_id = str(data["order_id"])
        if payment_status(order_id) is None:
            raise NotFound("No payment for this order.")
        try:
            with transaction.atomic():
                request_refund(
                    order_id=order_id,
                    amount=data.get("amount"),
                    reason=data.get("reason") or "ADMIN",
                    command_id="",
                    strict=True,
                )
        except PaymentConflict as exc:
            raise Conflict(str(exc)) from exc
        if run_refunds(order_id=order_id).pending_refunds:
            raise ServiceUnavailable("The payment gateway did not answer; the refund will be retried.")
        return Response(payment_status(order_id))


def _validated(shape: type, data: Any) -> dict[str, Any]:
    serializer = shape(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _customer_of_order(order_id: str) -> str | None:
    """The order's customer: from the directory, else as payments recorded it; None: no such order."""
    directory = order_directory()
    if directory is not None:
        return directory(order_id)
    return payment_owner(order_id)


def _may_see(request: Request, order_id: str) -> bool:
    if is_admin(request):
        return True
    customer = customer_of(request)
    return bool(customer) and payment_owner(order_id) == customer


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False
