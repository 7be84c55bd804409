"""Read-only admin views of payments and of the simulated gateway's ledger."""

from django.contrib import admin
from django.http import HttpRequest

from .models import GatewayCharge, GatewayRefund, PaymentRecord


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(PaymentRecord)
class PaymentRecordAdmin(_ReadOnly):
    list_display = ("order_id", "status", "amount", "refunded_amount", "attempts", "captures", "updated_at")
    list_filter = ("status",)
    search_fields = ("order_id", "payment_id")


@admin.register(GatewayCharge)
class GatewayChargeAdmin(_ReadOnly):
    list_display = ("idempotency_key", "status", "amount", "refunded_amount", "charge_calls", "updated_at")
    list_filter = ("status",)
    search_fields = ("idempotency_key",)


@admin.register(GatewayRefund)
class GatewayRefundAdmin(_ReadOnly):
    list_display = ("refund_key", "idempotency_key", "amount", "created_at")
    search_fields = ("idempotency_key", "refund_key")
