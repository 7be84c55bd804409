"""Admin building blocks shared by every context."""

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.db.models import Model
from django.http import HttpRequest


def holds_model_permission(request: HttpRequest, model: type[Model], action: str = "change") -> bool:
    """Whether the admin user holds ``<app>.<action>_<model>`` (a superuser holds every one).

    For admin actions on rows the admin shows read-only: their own ``has_change_permission``
    says no to everyone, yet an operator who holds the model's change permission may act.
    """
    opts = model._meta
    return request.user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that change only through their own commands or projections: shown, never edited."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
