"""Input fields as strict as the OpenAPI description says they are.

DRF's own fields are lenient in ways the schema cannot state: ``CharField`` reads ``5`` as
``"5"``, ``UUIDField`` reads ``5`` or ``false`` as a UUID (``uuid.UUID(int=…)``),
``DecimalField`` takes a JSON number (a float that may not be the amount the client meant).
The schema documents them as strings, so the API takes strings only; anything else is a 400
naming the field.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers


class StrictCharField(serializers.CharField):
    """Text given as a JSON string (no numbers)."""

    default_error_messages = {"strict": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("strict")
        return super().to_internal_value(data)


class StrictRegexField(serializers.RegexField):
    """Text matching a pattern, given as a JSON string (no numbers)."""

    default_error_messages = {"strict": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("strict")
        return super().to_internal_value(data)


class StrictUUIDField(serializers.UUIDField):
    """A UUID given as a JSON string (no integers, no booleans)."""

    def to_internal_value(self, data: Any) -> Any:
        # A uuid.UUID comes from code (a command built in-process), never from JSON.
        if not isinstance(data, str | uuid.UUID):
            self.fail("invalid", value=type(data).__name__)
        return super().to_internal_value(data)


class RejectUnknownFields(serializers.Serializer):
    """Refuses members it does not know (a typo must not be silently ignored).

    The schema says so too (``additionalProperties: false``, config/openapi.py); a body of any
    other serializer may carry members it ignores.
    """

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                raise serializers.ValidationError({key: ["Unknown field."] for key in unknown})
        return super().to_internal_value(data)


class MoneyField(serializers.DecimalField):
    """An amount given as a JSON string of digits with at most ``decimal_places`` decimals."""

    default_error_messages = {"strict": 'Must be a string such as "25.00".'}

    def to_internal_value(self, data: Any) -> Decimal:
        # A Decimal comes from code (a command built in-process), never from JSON.
        if not isinstance(data, str | Decimal):
            self.fail("strict")
        return super().to_internal_value(data)


def money_pattern(field: MoneyField) -> str:
    """The regular expression of the amounts ``field`` accepts (non-negative, or positive).

    Two decimals at most (as every amount of the API); leading zeros do not count as digits.
    """
    if field.decimal_places != 2:
        raise ValueError("money has two decimal places")
    whole = int(field.max_digits or 12) - 2
    if field.min_value is not None and Decimal(field.min_value) > 0:
        # At least one non-zero digit, before or after the point.
        return f"^(0*[1-9][0-9]{{0,{whole - 1}}}(\\.[0-9]{{1,2}})?|0*\\.(0[1-9]|[1-9][0-9]?))$"
    return f"^0*[0-9]{{1,{whole}}}(\\.[0-9]{{1,2}})?$"


class MoneyFieldSchema(OpenApiSerializerFieldExtension):
    """How a MoneyField appears in the schema: a string with the exact pattern it accepts."""

    target_class = MoneyField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        field: MoneyField = self.target
        schema: dict[str, Any] = {"type": "string", "format": "decimal"}
        if direction == "request":
            schema["pattern"] = money_pattern(field)
            schema["maxLength"] = field.MAX_STRING_LENGTH
        return schema
