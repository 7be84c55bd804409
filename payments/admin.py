"""Read-only admin views of payments and of the simulated gateway's ledger."""

from django.contrib import admin

from config.admin import ReadOnlyAdmin

from .models import GatewayCharge, GatewayRefund, PaymentRecord


@admin.register(PaymentRecord)
class PaymentRecordAdmin(ReadOnlyAdmin):
    list_display = ("order_id", "status", "amount", "refunded_amount", "attempts", "captures", "updated_at")
    list_filter = ("status",)
    search_fields = ("order_id", "payment_id")


@admin.register(GatewayCharge)
class GatewayChargeAdmin(ReadOnlyAdmin):
    list_display = ("idempotency_key", "status", "amount", "refunded_amount", "charge_calls", "updated_at")
    list_filter = ("status",)
    search_fields = ("idempotency_key",)


@admin.register(GatewayRefund)
class GatewayRefundAdmin(ReadOnlyAdmin):
    list_display = ("refund_key", "idempotency_key", "amount", "created_at")
    search_fields = ("idempotency_key", "refund_key")
