"""The query parameters of the order lists and search, validated into one shape.

One validator for every path that lists orders (``/api/orders``, ``/customer/{id}``,
``/search``): an unknown value, a malformed date or amount, or a page size over the maximum
is a 400 naming the parameter. Unknown parameter names are ignored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.http import QueryDict
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from rest_framework.exceptions import ValidationError

STATUSES = ("PENDING", "INVENTORY_RESERVED", "PAYMENT_PROCESSING", "COMPLETED", "CANCELLED", "FAILED")
ORDERINGS = ("created_at", "-created_at", "total_amount", "-total_amount")
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_TEXT = 255
MAX_SEARCH = 200
MAX_PAGE = 10**6
MAX_AMOUNT = Decimal("1e12")


@dataclass(frozen=True, slots=True)
class OrderFilters:
    """A validated list request; ``customer_id`` is the effective one (a USER's own id)."""

    customer_id: str | None = None
    status: str | None = None
    product_id: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None  # exclusive upper bound
    min_total: Decimal | None = None
    max_total: Decimal | None = None
    ordering: str = "-created_at"
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE

    def cache_params(self) -> dict[str, Any]:
        """A JSON-able identity of the request, for cache keys."""
        return {key: str(value) if value is not None else None for key, value in asdict(self).items()}


def _text(params: QueryDict, name: str, errors: dict[str, list[str]]) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if len(value) > MAX_TEXT or "\x00" in value:
        errors[name] = [f"Must be at most {MAX_TEXT} characters, without NUL."]
        return None
    return value


def _moment(params: QueryDict, name: str, errors: dict[str, list[str]], *, upper: bool) -> datetime | None:
    value = _text(params, name, errors)
    if value is None:
        return None
    try:
        day = parse_date(value)  # before parse_datetime, which reads a date as its midnight
        moment = None if day else parse_datetime(value)
    except ValueError:
        moment = day = None
    if day is not None and upper and day == date.max:
        moment = datetime.max  # the end of the last day there is
    elif day is not None:
        moment = datetime.combine(day + timedelta(days=1) if upper else day, time.min)
    if moment is None:
        errors[name] = ["Must be an ISO-8601 date or date-time."]
        return None
    if timezone.is_naive(moment):
        return moment.replace(tzinfo=UTC)
    # In UTC: PostgreSQL refuses offsets past ±15:59, which ISO-8601 allows (up to ±23:59).
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # past the first or the last day there is
        return (datetime.min if moment.year == 1 else datetime.max).replace(tzinfo=UTC)


def _amount(params: QueryDict, name: str, errors: dict[str, list[str]]) -> Decimal | None:
    value = _text(params, name, errors)
    if value is None:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or abs(amount) >= MAX_AMOUNT:
        errors[name] = ["Must be a decimal amount such as 25.00."]
        return None
    return amount


def _positive(params: QueryDict, name: str, default: int, errors: dict[str, list[str]], *, most: int) -> int:
    value = params.get(name)
    if value is None or value == "":
        return default
    # isascii: "²".isdigit() is true, and int() refuses it.
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= most:
        errors[name] = [f"Must be an integer from 1 to {most}."]
        return default
    return int(value)


def _choice(
    params: QueryDict, name: str, choices: tuple[str, ...], errors: dict[str, list[str]]
) -> str | None:
    value = _text(params, name, errors)
    if value is not None and value not in choices:
        errors[name] = [f"Must be one of {', '.join(choices)}."]
        return None
    return value


def parse_filters(params: QueryDict, *, customer_id: str | None) -> OrderFilters:
    """Validate the query string; ``customer_id`` is the caller's scope (None: any customer)."""
    errors: dict[str, list[str]] = {}
    requested_customer = _text(params, "customer_id", errors)
    filters = OrderFilters(
        customer_id=customer_id if customer_id is not None else requested_customer,
        status=_choice(params, "status", STATUSES, errors),
        product_id=_text(params, "product_id", errors),
        created_from=_moment(params, "created_from", errors, upper=False),
        created_to=_moment(params, "created_to", errors, upper=True),
        min_total=_amount(params, "min_total", errors),
        max_total=_amount(params, "max_total", errors),
        ordering=_choice(params, "ordering", ORDERINGS, errors) or "-created_at",
        page=_positive(params, "page", 1, errors, most=MAX_PAGE),
        page_size=_positive(params, "page_size", DEFAULT_PAGE_SIZE, errors, most=MAX_PAGE_SIZE),
    )
    if errors:
        raise ValidationError(errors)
    return filters


def parse_search(params: QueryDict) -> str:
    """The search text: required, at most 200 characters, no NUL."""
    q = (params.get("q") or "").strip()
    if not q:
        raise ValidationError({"q": ["A search text is required."]})
    if len(q) > MAX_SEARCH or "\x00" in q:
        raise ValidationError({"q": [f"Must be at most {MAX_SEARCH} characters, without NUL."]})
    return q


def parse_day_range(params: QueryDict, *, today: date) -> tuple[date, date]:
    """Analytics' ``from``/``to`` (UTC dates, inclusive; default the last 30 days)."""
    errors: dict[str, list[str]] = {}
    bounds: dict[str, date | None] = {}
    for name, default in (("to", today), ("from", None)):
        value = params.get(name)
        if value in (None, ""):
            bounds[name] = default
            continue
        try:
            bounds[name] = parse_date(value) if "\x00" not in value else None
        except ValueError:
            bounds[name] = None
        if bounds[name] is None:
            errors[name] = ["Must be a date (YYYY-MM-DD)."]
    if errors:
        raise ValidationError(errors)
    end = bounds["to"] or today
    start = bounds["from"] or end - timedelta(days=29)
    if start > end:
        raise ValidationError({"from": ["Must not be after to."]})
    if (end - start).days > 3660:
        raise ValidationError({"from": ["The range is limited to ten years."]})
    return start, end
