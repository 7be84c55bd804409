"""The query side's API (docs/api.md "Endpoints"): one thin view per operation.

Reads come from the read models (eventually consistent) through the cache, on the read
replica when there is one (``config.replica``; the cache decides which answers it keeps). Checks run in
the contract's order: 401 → 403 (role) → 404 (another customer) → 400 (input).
A USER only ever sees their own orders: the scope is forced to their customer id (a
``customer_id`` parameter from a USER is ignored).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config import replica
from config.openapi import problem
from config.permissions import IsAdmin, customer_of, is_admin

from . import analytics, cache, selectors, serializers
from .filters import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    MAX_SEARCH,
    MAX_TEXT,
    ORDERINGS,
    STATUSES,
    OrderFilters,
    parse_day_range,
    parse_filters,
    parse_search,
)

# A USER account without a customer id has no orders to list (config/openapi.py adds the rest).
_NO_CUSTOMER = {403: problem("The account has no customer id")}
_TEXT = {"type": "string", "maxLength": MAX_TEXT}
# A date or a date-time (an empty value is no filter), as parse_filters reads them.
_EMPTY = {"type": "string", "maxLength": 0}
_MOMENT = {"anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}, _EMPTY]}
_DAY = {"anyOf": [{"type": "string", "format": "date"}, _EMPTY]}
_AMOUNT = {"type": "string", "pattern": r"^(-?[0-9]{1,12}(\.[0-9]{1,10})?)?$"}
_CUSTOMER_FILTER = OpenApiParameter(
    "customer_id", _TEXT, description="ADMIN only; a USER always sees their own"
)
_FILTERS = [
    OpenApiParameter("status", str, enum=list(STATUSES)),
    OpenApiParameter("product_id", _TEXT),
    OpenApiParameter("created_from", _MOMENT, description="ISO-8601 date or date-time (inclusive)"),
    OpenApiParameter("created_to", _MOMENT, description="ISO-8601 date (inclusive day) or date-time"),
    OpenApiParameter("min_total", _AMOUNT, description="An amount such as 25.00"),
    OpenApiParameter("max_total", _AMOUNT, description="An amount such as 25.00"),
    OpenApiParameter("ordering", str, enum=list(ORDERINGS)),
    OpenApiParameter("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}, description="From 1"),
    OpenApiParameter(
        "page_size",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
        description=f"1-{MAX_PAGE_SIZE}, default {DEFAULT_PAGE_SIZE}; else a 400",
    ),
]


def caller_scope(request: Request) -> str | None:
    """The customer a caller is limited to: ``None`` for an ADMIN, the own id for a USER."""
    if is_admin(request):
        return None
    own = customer_of(request)
    if not own:
        raise exceptions.PermissionDenied("This account has no customer id.")
    return own


def _page_url(request: Request, page: int | None) -> str | None:
    if page is None:
        return None
    params = request.query_params.copy()
    params["page"] = str(page)
    return request.build_absolute_uri(f"{request.path}?{params.urlencode()}")


def paged_response(
    request: Request,
    *,
    namespace: str,
    filters: OrderFilters,
    params: Any,
    compute: Callable[[], dict[str, Any]],
) -> Response:
    """A cached page as the contract's ``{count, next, previous, results}``."""
    page = cache.cached(namespace=namespace, customer_id=filters.customer_id, params=params, compute=compute)
    return Response(
        {
            "count": page["count"],
            "next": _page_url(request, page["next_page"]),
            "previous": _page_url(request, page["previous_page"]),
            "results": page["results"],
        }
    )


class OrderListView(APIView):
    """GET /api/orders: the read model, filtered, ordered and paginated."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="orders_list",
        summary="List orders (a USER: their own), filtered, ordered, paginated",
        parameters=[_CUSTOMER_FILTER, *_FILTERS],
        responses={200: serializers.OrderPageOutput, **_NO_CUSTOMER},
    )
    def get(self, request: Request) -> Response:
        filters = parse_filters(request.query_params, customer_id=caller_scope(request))
        return _order_list(request, filters)


def _order_list(request: Request, filters: OrderFilters) -> Response:
    """One page of orders matching ``filters``, cache-first."""
    return paged_response(
        request,
        namespace="list",
        filters=filters,
        params=filters.cache_params(),
        compute=lambda: selectors.list_orders(filters),
    )


class CustomerOrderListView(APIView):
    """GET /api/orders/customer/{customer_id}: one customer's orders (a USER: only their own)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="orders_customer_list",
        summary="List one customer's orders (a USER: only their own)",
        parameters=_FILTERS,
        responses={
            200: serializers.OrderPageOutput,
            404: problem("Another customer's list (for a USER), or an id that cannot exist"),
            **_NO_CUSTOMER,
        },
    )
    def get(self, request: Request, customer_id: str) -> Response:
        scope = caller_scope(request)
        # Another customer's list is never revealed; an id that cannot exist is simply unknown.
        if (scope is not None and scope != customer_id) or len(customer_id) > 255 or "\x00" in customer_id:
            raise exceptions.NotFound("There is no such customer.")
        filters = parse_filters(request.query_params, customer_id=customer_id)
        return _order_list(request, filters)


class OrderSearchView(APIView):
    """GET /api/orders/search?q=: full text over product names, order id and customer id."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="orders_search",
        summary="Search orders by product name, order id or customer id, ranked",
        parameters=[
            OpenApiParameter("q", {"type": "string", "minLength": 1, "maxLength": MAX_SEARCH}, required=True),
            _CUSTOMER_FILTER,
            *_FILTERS,
        ],
        responses={200: serializers.OrderPageOutput, **_NO_CUSTOMER},
    )
    def get(self, request: Request) -> Response:
        scope = caller_scope(request)
        q = parse_search(request.query_params)
        filters = parse_filters(request.query_params, customer_id=scope)
        return paged_response(
            request,
            namespace="search",
            filters=filters,
            params=[q, filters.cache_params()],
            compute=lambda: selectors.search_orders(q, filters),
        )


class OrderAnalyticsView(APIView):
    """GET /api/orders/analytics (ADMIN): figures over ``from``..``to`` (UTC days, inclusive)."""

    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema(
        operation_id="orders_analytics",
        summary="Order analytics over a range of days (ADMIN)",
        parameters=[
            OpenApiParameter("from", _DAY, description="First UTC day (default: 29 days before to)"),
            OpenApiParameter("to", _DAY, description="Last UTC day (default: today)"),
        ],
        responses={200: serializers.AnalyticsOutput},
    )
    def get(self, request: Request) -> Response:
        start, end = parse_day_range(request.query_params, today=timezone.now().date())
        return Response(replica.read(lambda: analytics.order_analytics(start, end)).value)
