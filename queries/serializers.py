"""Response shapes of the query endpoints (for the OpenAPI schema; views build plain dicts)."""

from __future__ import annotations

from rest_framework import serializers

from .filters import STATUSES


class OrderSummaryOutput(serializers.Serializer):
    order_id = serializers.UUIDField()
    customer_id = serializers.CharField()
    status = serializers.ChoiceField(choices=STATUSES)
    total_amount = serializers.CharField(help_text="Money: two decimals")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class OrderPageOutput(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = OrderSummaryOutput(many=True)


class TopProductOutput(serializers.Serializer):
    product_id = serializers.CharField()
    product_name = serializers.CharField()
    quantity = serializers.IntegerField()
    revenue = serializers.CharField()


class DayOutput(serializers.Serializer):
    date = serializers.DateField()
    orders = serializers.IntegerField()
    revenue = serializers.CharField()


class AnalyticsOutput(serializers.Serializer):
    from_ = serializers.DateField()
    to = serializers.DateField()
    as_of = serializers.DateTimeField()
    orders_by_status = serializers.DictField(
        child=serializers.IntegerField(), help_text="Orders per status (keys: the order statuses)"
    )
    revenue = serializers.CharField()
    average_order_value = serializers.CharField()
    top_products = TopProductOutput(many=True)
    per_day = DayOutput(many=True)
    payment_success_rate = serializers.FloatField(allow_null=True)

    def get_fields(self):
        # "from" is a Python keyword: declared as from_, published as from.
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields
