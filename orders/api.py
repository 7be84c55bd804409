"""The orders API, command side (docs/api.md "Endpoints"): one thin view per operation.

Checks run in the contract's order: 401 → 403 → 404 (another customer's order is never
revealed) → 400/422 (input) → 409 (state).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.openapi import problem, retry_after
from config.permissions import IsAdmin, customer_of, is_admin
from config.problems import Conflict, UnprocessableEntity
from eventstore.commands import validate
from sagas import public as sagas_public

from . import domain, handlers, idempotency, intake, neighbours, serializers

IDEMPOTENCY_HEADER = "Idempotency-Key"
_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")
# The statuses only these views know; config/openapi.py adds those every operation shares.
_NOT_VISIBLE = problem("No order with this id, or another customer's")
_NOT_NOW = problem("The order's state does not allow it (already cancelled or failed, or failing)")


def _caller_id(request: Request) -> str:
    """The caller's user id from the token (the scope of Idempotency-Keys, the ``by`` of a cancel)."""
    return str(getattr(request.user, "user_id", ""))


def _visible_order(request: Request, order_id: uuid.UUID) -> domain.Order:
    """The order if the caller may see it; 404 otherwise (never reveal another's order)."""
    try:
        order = handlers.load_order(str(order_id))
    except handlers.OrderNotFound:
        raise exceptions.NotFound("There is no order with this id.") from None
    if not is_admin(request) and order.customer_id != customer_of(request):
        raise exceptions.NotFound("There is no order with this id.")
    return order


class OrderPlaceView(APIView):
    """POST /api/orders: place an order; the saga runs asynchronously (202).

    The stack mode serves this operation with a thin endpoint (orders/asgi.py) that runs this
    view's checks (``initial``), :func:`placement_of` and :func:`answer_to` without Django's
    request cycle; this view stays the documented one and serves it everywhere else.
    """

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="orders_place",
        summary="Place an order (the saga runs asynchronously)",
        request=serializers.PlaceOrderInput,
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                str,
                OpenApiParameter.HEADER,
                required=False,
                pattern=_KEY_PATTERN.pattern,
                description="Retrying with the same key and body places the order once (kept 24 h)",
            ),
            OpenApiParameter(
                "Location",
                str,
                OpenApiParameter.HEADER,
                response=[202],
                required=True,
                description="The order: /api/orders/{order_id}",
            ),
            retry_after(409, 503),
        ],
        responses={
            202: OpenApiResponse(serializers.OrderAccepted, description="Accepted: the order is PENDING"),
            400: problem("Invalid input or an unknown product (see `errors`)"),
            403: problem("The account has no customer id"),
            409: problem("A request with this Idempotency-Key is still running; retry after Retry-After"),
            422: problem("This Idempotency-Key was used with another request body"),
            503: problem(
                "Too many orders in progress: none completed in time to make room "
                "(ORDER_INTAKE_MAX_OPEN); nothing was recorded, retry after Retry-After"
            ),
        },
    )
    def post(self, request: Request) -> Response:
        placement = placement_of(request)
        return answer_to(placement, intake.place(placement))


def placement_of(request: Request) -> intake.Placement:
    """The order a POST /api/orders request asks to place, validated (400/403 otherwise)."""
    data = _validated(request)
    customer_id = _customer(request, data)
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not _KEY_PATTERN.match(key):
        raise exceptions.ValidationError({IDEMPOTENCY_HEADER: ["must be 1-255 visible ASCII characters"]})
    lines = tuple(handlers.RequestedLine(item["product_id"], item["quantity"]) for item in data["items"])
    keyed = None
    if key is not None:
        keyed = idempotency.KeyedRequest(
            user_id=_caller_id(request), key=key, request_hash=idempotency.fingerprint(request.data)
        )
    return intake.Placement(customer_id=customer_id, lines=lines, payment=dict(data["payment"]), key=keyed)


def answer_to(placement: intake.Placement, outcome: intake.Outcome) -> Response:
    """The response to a placement once its batch committed (or the API error it became)."""
    if isinstance(outcome, handlers.UnknownProducts):
        errors = {
            "items": [
                {"product_id": ["Unknown product."]} if i in outcome.indexes else {}
                for i in range(len(placement.lines))
            ]
        }
        raise exceptions.ValidationError(errors)
    if isinstance(outcome, idempotency.KeyReusedWithOtherRequest):
        raise UnprocessableEntity(
            "This Idempotency-Key was already used with a different request body.",
            "idempotency_key_reused",
        )
    if isinstance(outcome, idempotency.RequestStillRunning):
        raise Conflict(
            "A request with this Idempotency-Key is still being processed; retry shortly.",
            "idempotency_in_progress",
            retry_after=1,
        )
    if isinstance(outcome, BaseException):
        raise outcome
    headers = {"Location": outcome.location} if outcome.location else {}
    return Response(outcome.body, status=outcome.status, headers=headers)


def _validated(request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise exceptions.ValidationError({"non_field_errors": ["The body must be a JSON object."]})
    # One form per thread, reused: building it was a tenth of the CPU of placing an order.
    return validate(serializers.PlaceOrderInput, request.data)


def _customer(request: Request, data: dict[str, Any]) -> str:
    if is_admin(request):
        if not data.get("customer_id"):
            raise exceptions.ValidationError({"customer_id": ["An ADMIN must name the customer."]})
        return str(data["customer_id"])
    customer_id = customer_of(request)
    if not customer_id:
        raise exceptions.PermissionDenied("This account has no customer id.")
    return customer_id


class OrderDetailView(APIView):
    """GET /api/orders/{order_id} (strongly consistent) and DELETE (cancel)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="orders_retrieve",
        summary="Read an order and its saga (strongly consistent)",
        responses={200: serializers.OrderOutput, 404: _NOT_VISIBLE},
    )
    def get(self, request: Request, order_id: uuid.UUID) -> Response:
        order = _visible_order(request, order_id)
        return Response(serializers.order_body(order, sagas_public.saga_summary(order.order_id)))

    @extend_schema(
        operation_id="orders_cancel",
        summary="Cancel an order (compensating what was done)",
        request=None,
        responses={202: serializers.OrderAccepted, 404: _NOT_VISIBLE, 409: _NOT_NOW},
    )
    def delete(self, request: Request, order_id: uuid.UUID) -> Response:
        order = _visible_order(request, order_id)
        by = _caller_id(request)
        try:
            current = handlers.cancel_order(order_id=order.order_id, by=by, reason="cancelled by request")
        except sagas_public.SagaConflict as exc:
            raise Conflict(f"The order cannot be cancelled: {exc}.", "order_terminal") from None
        return Response({"order_id": order.order_id, "status": current}, status=status.HTTP_202_ACCEPTED)


class OrderTimelineView(APIView):
    """GET /api/orders/{order_id}/timeline: what happened to the order, for its page.

    The saga's step attempts and transitions and the payment's events, each with its time, read
    from the write side like GET /api/orders/{order_id} (strongly consistent); the order itself
    stays on that endpoint.
    """

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="orders_timeline",
        summary="An order's timeline: saga steps, transitions and payment events with their times",
        responses={200: serializers.OrderTimelineOutput, 404: _NOT_VISIBLE},
    )
    def get(self, request: Request, order_id: uuid.UUID) -> Response:
        order = _visible_order(request, order_id)
        return Response(
            {
                "order_id": order.order_id,
                "status": order.status,
                "failure_reason": order.failure_reason,
                "created_at": order.created_at,
                "updated_at": order.updated_at,
                **sagas_public.saga_history(order.order_id),
                "payment": neighbours.payment_history(order.order_id),
            }
        )


class OrderStatusView(APIView):
    """PUT /api/orders/{order_id}/status (ADMIN): cancel or fail an order, compensating."""

    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema(
        operation_id="orders_change_status",
        summary="Cancel or fail an order by hand (ADMIN)",
        request=serializers.ChangeStatusInput,
        responses={
            202: serializers.OrderAccepted,
            404: _NOT_VISIBLE,
            409: problem("Only CANCELLED and FAILED can be set, and only while the order's state allows it"),
        },
    )
    def put(self, request: Request, order_id: uuid.UUID) -> Response:
        order = _visible_order(request, order_id)
        form = serializers.ChangeStatusInput(data=request.data)
        form.is_valid(raise_exception=True)
        target = form.validated_data["status"]
        reason = form.validated_data["reason"] or f"set to {target} by an admin"
        by = _caller_id(request)
        try:
            if target == domain.CANCELLED:
                current = handlers.cancel_order(order_id=order.order_id, by=by, reason=reason)
            elif target == domain.FAILED:
                current = handlers.fail_order(order_id=order.order_id, by=by, reason=reason)
            else:
                raise Conflict(f"An order cannot be set to {target} by hand.", "status_not_settable")
        except sagas_public.SagaConflict as exc:
            raise Conflict(f"The order cannot change: {exc}.", "order_terminal") from None
        return Response({"order_id": order.order_id, "status": current}, status=status.HTTP_202_ACCEPTED)
