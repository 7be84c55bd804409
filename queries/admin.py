"""Django admin of the query side: projection state with its lag, and the read models (read only)."""

from __future__ import annotations

from django.contrib import admin

from config.admin import ReadOnlyAdmin

from .models import OrderReadModel, ProjectionState
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
