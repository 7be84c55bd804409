"""Request and response shapes of the inventory API and commands (validation only, no logic).

The same validators serve the HTTP API and the ReserveInventory / ConfirmInventory /
ReleaseInventory commands, so no path accepts what another rejects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

from config.fields import MoneyField, StrictCharField, StrictRegexField, StrictUUIDField

from .domain import PRODUCT_ID_PATTERN, Line, ReservationState

MAX_LINES = 100
MAX_QUANTITY = 1000
MAX_AVAILABLE = 1_000_000_000


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer only: no strings, floats or booleans."""

    default_error_messages = {"strict": "Must be an integer."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("strict")
        return super().to_internal_value(data)


class ProductIdField(StrictRegexField):
    """A product id: ``[A-Za-z0-9._-]{1,64}``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            PRODUCT_ID_PATTERN.pattern + r"\Z",
            max_length=64,
            # No braces: DRF formats this message with str.format (a bool id crashed it).
            error_messages={"invalid": "Must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'."},
            **kwargs,
        )


class ProductInput(serializers.Serializer):
    """PUT /api/inventory/{product_id}."""

    name = StrictCharField(max_length=200, trim_whitespace=True)
    price = MoneyField(max_digits=10, decimal_places=2, min_value=0)
    available = StrictIntegerField(min_value=0, max_value=MAX_AVAILABLE)


class ProductOutput(serializers.Serializer):
    """A product's stock as the API shows it."""

    product_id = serializers.CharField()
    name = serializers.CharField()
    price = serializers.CharField()
    available = serializers.IntegerField()
    reserved = serializers.IntegerField()


class LineInput(serializers.Serializer):
    """One line of a reservation."""

    product_id = ProductIdField()
    quantity = StrictIntegerField(min_value=1, max_value=MAX_QUANTITY)


class ReserveInput(serializers.Serializer):
    """POST /api/inventory/reserve and the ReserveInventory command (which adds ``expires_at``)."""

    order_id = StrictUUIDField()
    items = serializers.ListField(child=LineInput(), min_length=1, max_length=MAX_LINES)
    expires_at = serializers.DateTimeField(required=False)

    def lines(self) -> list[Line]:
        """The validated lines."""
        return self.lines_of(self.validated_data)

    @staticmethod
    def lines_of(validated: Mapping[str, Any]) -> list[Line]:
        """The lines of validated data."""
        return [Line(item["product_id"], item["quantity"]) for item in validated["items"]]


class OrderInput(serializers.Serializer):
    """POST /api/inventory/confirm and /release, and the ConfirmInventory command."""

    order_id = StrictUUIDField()


class ReleaseInput(OrderInput):
    """The ReleaseInventory command (the API's release has no reason field: it is ADMIN)."""

    reason = StrictCharField(max_length=64, required=False, default="ADMIN")


class ReservationOutput(serializers.Serializer):
    """A reservation as the API shows it."""

    order_id = serializers.CharField()
    state = serializers.ChoiceField(choices=[state.value for state in ReservationState])
    items = LineInput(many=True)
    expires_at = serializers.CharField(allow_null=True)
