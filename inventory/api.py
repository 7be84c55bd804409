"""The inventory HTTP API (README "API at a glance"): one thin view per operation — validate, call, answer.

A product id that breaks ``[A-Za-z0-9._-]{1,64}`` is a 404 on GET (no such product can exist)
and a 400 on PUT (the id is input there).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, status
from rest_framework import serializers as drf_serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.permissions import IsAdmin
from config.problems import Conflict, ServiceUnavailable
from eventstore.store import ConcurrencyError

from .bulkhead import ReservationBusy
from .domain import PRODUCT_ID_PATTERN, ReservationConflict
from .handlers import (
    ReservationNotFound,
    ReservationOutcome,
    confirm_reservation,
    default_expiry,
    release_reservation,
    reserve_stock,
)
from .models import Product
from .products import fresh_product_view, product_view, upsert_product, view_of
from .serializers import (
    OrderInput,
    ProductInput,
    ProductOutput,
    ReleaseInput,
    ReservationOutput,
    ReserveInput,
)

CONFLICT_RETRIES = 3


def _validated(serializer_class: type, data: Any) -> Any:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer


def _reservation_body(outcome: ReservationOutcome) -> dict[str, Any]:
    return {
        "order_id": outcome.order_id,
        "state": outcome.state,
        "items": outcome.items,
        "expires_at": outcome.expires_at,
    }


def _retrying_conflicts(operation: Any) -> ReservationOutcome:
    """Run a first write for an order again when a concurrent one for it won the race."""
    for attempt in range(1, CONFLICT_RETRIES + 1):
        try:
            return operation()
        except ConcurrencyError:
            if attempt == CONFLICT_RETRIES:
                raise
    raise AssertionError("unreachable")


class ProductDetailApi(APIView):
    """GET (any user) and PUT (ADMIN) /api/inventory/{product_id}."""

    def get_permissions(self) -> list[Any]:
        if self.request.method == "GET":
            return [IsAuthenticated()]
        return [IsAuthenticated(), IsAdmin()]

    @extend_schema(responses={200: ProductOutput}, operation_id="inventory_product_read")
    def get(self, request: Request, product_id: str) -> Response:
        view = product_view(product_id) if PRODUCT_ID_PATTERN.fullmatch(product_id) else None
        if view is None:
            raise exceptions.NotFound("No product with this id.")
        return Response(view)

    @extend_schema(request=ProductInput, responses={200: ProductOutput, 201: ProductOutput})
    def put(self, request: Request, product_id: str) -> Response:
        if not PRODUCT_ID_PATTERN.fullmatch(product_id):
            raise exceptions.ValidationError({"product_id": ["Must match [A-Za-z0-9._-]{1,64}."]})
        data = _validated(ProductInput, request.data).validated_data
        created = upsert_product(
            product_id=product_id, name=data["name"], price=data["price"], available=data["available"]
        )
        view = fresh_product_view(product_id)
        return Response(view, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class ReserveApi(APIView):
    """POST /api/inventory/reserve (ADMIN): all lines or none; 409 when stock is short."""

    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema(request=ReserveInput, responses={200: ReservationOutput})
    def post(self, request: Request) -> Response:
        command = _validated(ReserveInput, request.data)
        order_id = str(command.validated_data["order_id"])
        try:
            outcome = _retrying_conflicts(
                lambda: reserve_stock(
                    order_id=order_id,
                    lines=command.lines(),
                    expires_at=command.validated_data.get("expires_at") or default_expiry(),
                    correlation_id=order_id,
                    causation_id="",
                )
            )
        except ReservationBusy as exc:
            raise ServiceUnavailable(str(exc), retry_after=1) from exc
        if outcome.state is None:
            raise Conflict(
                "Stock is short; nothing was reserved.", "out_of_stock", shortages=outcome.shortages
            )
        if outcome.state not in ("HELD", "CONFIRMED"):
            raise Conflict(f"The reservation of this order is already {outcome.state}.", "reservation_closed")
        return Response(_reservation_body(outcome))


class ConfirmApi(APIView):
    """POST /api/inventory/confirm (ADMIN): held units become sold."""

    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema(request=OrderInput, responses={200: ReservationOutput})
    def post(self, request: Request) -> Response:
        order_id = str(_validated(OrderInput, request.data).validated_data["order_id"])
        try:
            outcome = confirm_reservation(order_id=order_id, correlation_id=order_id, causation_id="")
        except ReservationNotFound as exc:
            raise exceptions.NotFound("No reservation for this order.") from exc
        except ReservationConflict as exc:
            raise Conflict(str(exc), "reservation_state") from exc
        return Response(_reservation_body(outcome))


class ReleaseApi(APIView):
    """POST /api/inventory/release (ADMIN): held units back to available, sold ones restocked."""

    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema(request=OrderInput, responses={200: ReservationOutput})
    def post(self, request: Request) -> Response:
        data = _validated(ReleaseInput, request.data).validated_data
        order_id = str(data["order_id"])
        outcome = _retrying_conflicts(
            lambda: release_reservation(
                order_id=order_id, reason=data["reason"], correlation_id=order_id, causation_id=""
            )
        )
        return Response(_reservation_body(outcome))


class ProductPagination(PageNumberPagination):
    """``page`` and ``page_size`` (default 20, at most 100), as every list of the API."""

    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100


ProductPage = inline_serializer(
    "ProductPage",
    fields={
        "count": drf_serializers.IntegerField(),
        "next": drf_serializers.CharField(allow_null=True),
        "previous": drf_serializers.CharField(allow_null=True),
        "results": ProductOutput(many=True),
    },
)


class ProductListApi(APIView):
    """GET /api/inventory: the catalogue, by product id (any user)."""

    @extend_schema(responses={200: ProductPage}, operation_id="inventory_product_list")
    def get(self, request: Request) -> Response:
        paginator = ProductPagination()
        page = paginator.paginate_queryset(Product.objects.order_by("product_id"), request, view=self)
        return paginator.get_paginated_response([view_of(row) for row in page or []])
