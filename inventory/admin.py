"""Django admin for stock and reservations; every stock change goes through upsert_product."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from config.admin import ReadOnlyAdmin

from .models import Product, Reservation
from .products import upsert_product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    """Products: name, price and available are edited; the change is recorded as StockAdjusted."""

    list_display = ("product_id", "name", "price", "available", "reserved", "sold", "received", "updated_at")
    search_fields = ("product_id", "name")
    fields = ("product_id", "name", "price", "available", "reserved", "sold", "received", "version")
    readonly_fields = ("reserved", "sold", "received", "version")

    def get_readonly_fields(self, request: HttpRequest, obj: Product | None = None) -> Any:
        # The id is the stream id: fixed once the product exists.
        return (*self.readonly_fields, "product_id") if obj else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: Product, form: Any, change: bool) -> None:
        # The row is written by the handler with its event, never by the admin form directly.
        upsert_product(product_id=obj.product_id, name=obj.name, price=obj.price, available=obj.available)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdmin):
    """Reservations, read only: they change through the saga's commands."""

    list_display = ("order_id", "state", "expires_at", "created_at", "updated_at")
    list_filter = ("state",)
    search_fields = ("order_id",)
    readonly_fields = ("order_id", "items", "state", "expires_at", "created_at", "updated_at")
