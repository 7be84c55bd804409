"""The inventory HTTP API (docs/api.md "Endpoints"): one thin view per operation — validate, call, answer.

A product id that breaks ``[A-Za-z0-9._-]{1,64}`` is a 404 on GET (no such product can exist)
and a 400 on PUT (the id is input there).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, status
from rest_framework import serializers as drf_serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.openapi import problem, retry_after
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
    ReservationOutput,
    ReserveInput,
)

CONFLICT_RETRIES = 3
ADMIN_RELEASE = "ADMIN"
_PRODUCT_ID = OpenApiParameter(
    "product_id", str, OpenApiParameter.PATH, pattern=f"^{PRODUCT_ID_PATTERN.pattern}$"
)


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

    @extend_schema(
        operation_id="inventory_product_read",
        parameters=[_PRODUCT_ID],
        summary="Read a product: name, price, available and reserved stock",
        responses={200: ProductOutput, 404: problem("No product with this id")},
    )
    def get(self, request: Request, product_id: str) -> Response:
        view = product_view(product_id) if PRODUCT_ID_PATTERN.fullmatch(product_id) else None
        if view is None:
            raise exceptions.NotFound("No product with this id.")
        return Response(view)

    @extend_schema(
        operation_id="inventory_product_put",
        parameters=[_PRODUCT_ID],
        summary="Create or update a product; stock is absolute (ADMIN)",
        request=ProductInput,
        responses={
            200: OpenApiResponse(ProductOutput, description="Updated"),
            201: OpenApiResponse(ProductOutput, description="Created"),
        },
    )
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

    @extend_schema(
        operation_id="inventory_reserve",
        summary="Reserve stock for an order by hand: all lines or none (ADMIN)",
        request=ReserveInput,
        parameters=[retry_after(503)],
        responses={
            200: ReservationOutput,
            409: problem("Stock is short (`shortages`), or the order's reservation is already closed"),
            503: problem("Too many reservations are running; retry after Retry-After"),
        },
    )
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

    @extend_schema(
        operation_id="inventory_confirm",
        summary="Confirm an order's reservation: held units become sold (ADMIN)",
        request=OrderInput,
        responses={
            200: ReservationOutput,
            404: problem("No reservation for this order"),
            409: problem("The reservation is not held (released or expired)"),
        },
    )
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

    @extend_schema(
        operation_id="inventory_release",
        summary="Release an order's reservation: held back to available, sold restocked (ADMIN)",
        request=OrderInput,
        responses={
            200: ReservationOutput,
            409: problem("A concurrent change of this reservation won; retry"),
        },
    )
    def post(self, request: Request) -> Response:
        # The body is OrderInput, as documented: a release by hand is the ADMIN's, no reason taken.
        order_id = str(_validated(OrderInput, request.data).validated_data["order_id"])
        outcome = _retrying_conflicts(
            lambda: release_reservation(
                order_id=order_id, reason=ADMIN_RELEASE, correlation_id=order_id, causation_id=""
            )
        )
        return Response(_reservation_body(outcome))


DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_PAGE = 10**6


def _positive(request: Request, name: str, *, most: int) -> int | None:
    """An optional query parameter from 1 to ``most``, or a 400 naming it (as /api/orders does)."""
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    # isascii: "²".isdigit() is true, and int() refuses it.
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= most:
        raise exceptions.ValidationError({name: [f"Must be an integer from 1 to {most}."]})
    return int(value)


class ProductPagination(PageNumberPagination):
    """``page`` and ``page_size`` (default 20, at most 100), as every list of the API.

    DRF's own pagination reads a bad ``page_size`` as the default and a bad ``page`` as a 404;
    here both are a 400 problem naming the parameter, like the order lists. A page past the
    last one is still a 404.
    """

    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def get_page_size(self, request: Request) -> int:
        return _positive(request, self.page_size_query_param, most=MAX_PAGE_SIZE) or self.page_size

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any] | None:
        _positive(request, self.page_query_param, most=MAX_PAGE)
        return super().paginate_queryset(queryset, request, view)


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

    @extend_schema(
        operation_id="inventory_product_list",
        summary="The catalogue, by product id, paginated",
        parameters=[
            OpenApiParameter(
                "page",
                {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                description="From 1; past the last page is a 404",
            ),
            OpenApiParameter(
                "page_size",
                {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
                description=f"1-{MAX_PAGE_SIZE}, default {DEFAULT_PAGE_SIZE}; else a 400",
            ),
        ],
        responses={200: ProductPage, 404: problem("No such page")},
    )
    def get(self, request: Request) -> Response:
        paginator = ProductPagination()
        page = paginator.paginate_queryset(Product.objects.order_by("product_id"), request, view=self)
        return paginator.get_paginated_response([view_of(row) for row in page or []])
