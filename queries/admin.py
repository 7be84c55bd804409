"""Django admin of the query side: projection state with its lag, and the read models (read only).

*Orders* is where an operator starts: the live orders, each linked to its saga's page (the
order's console in the admin).
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from config.admin import ReadOnlyAdmin

from .models import Order, OrderReadModel, ProjectionState
from .projections import active_generation
from .replay import ProjectionLag, lag


@admin.register(ProjectionState)
class ProjectionStateAdmin(ReadOnlyAdmin):
    """Each projection: active generation, checkpoint, and how far behind the store it is."""

    list_display = (
        "name",
        "generation",
        "position",
        "lag_events",
        "lag_seconds",
        "checkpoint_lag",
        "caught_up_at",
        "rebuilt_at",
    )

    def _lag(self, obj: ProjectionState) -> ProjectionLag:
        return lag(obj.name)

    @admin.display(description="events behind")
    def lag_events(self, obj: ProjectionState) -> int:
        return self._lag(obj).events

    @admin.display(description="seconds behind")
    def lag_seconds(self, obj: ProjectionState) -> str:
        return f"{self._lag(obj).seconds:.1f}"

    @admin.display(description="events after checkpoint")
    def checkpoint_lag(self, obj: ProjectionState) -> int:
        return self._lag(obj).checkpoint_events


@admin.register(OrderReadModel)
class OrderReadModelAdmin(ReadOnlyAdmin):
    """The order read model (every generation; the active one is in Projection states)."""

    list_display = (
        "order_id",
        "customer_id",
        "status",
        "total_amount",
        "created_at",
        "updated_at",
        "generation",
    )
    list_filter = ("status", "generation")
    search_fields = ("=order_id", "customer_id")


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    """The orders as the API lists them (the active generation), each linked to its saga's page."""

    list_display = ("order_id", "customer_id", "status", "total_amount", "created_at", "saga")
    list_filter = ("status",)
    search_fields = ("=order_id", "customer_id")
    ordering = ("-created_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Order]:
        return super().get_queryset(request).filter(generation=active_generation("orders"))

    @admin.display(description="saga")
    def saga(self, obj: Order) -> str:
        # The saga page belongs to the sagas context; it is reached by its admin URL name only.
        url = reverse("admin:sagas_sagainstance_change", args=[str(obj.order_id)])
        return format_html('<a href="{}">saga and events</a>', url)
