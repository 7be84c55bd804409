"""Django admin for the people who call the API: customers (USER) and operators (ADMIN)."""

from axes.admin import AccessAttemptAdmin as AxesAccessAttemptAdmin
from axes.models import AccessAttempt
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """The stock user admin plus the role and customer id that go into every token."""

    list_display = ("username", "role", "customer_id", "email", "is_active", "is_staff")
    list_filter = ("role", "is_active", "is_staff", "is_superuser")
    search_fields = ("username", "customer_id", "email", "first_name", "last_name")
    fieldsets = (
        *(DjangoUserAdmin.fieldsets or ()),
        ("Order management", {"fields": ("role", "customer_id")}),
    )
    add_fieldsets = (
        *(DjangoUserAdmin.add_fieldsets or ()),
        ("Order management", {"fields": ("role", "customer_id")}),
    )


@admin.register(AccessAttempt)
class AccessAttemptAdmin(AxesAccessAttemptAdmin):
    """Failed logins counted by django-axes (orders/lockout.py): deleting an account's or an
    address's rows lifts its lock. Registered here (``AXES_ENABLE_ADMIN`` is off) so that its
    clean-up action, which deletes rows, needs the delete permission."""

    @admin.action(description="Clean up expired attempts", permissions=["delete"])
    def cleanup_expired_attempts(self, request: HttpRequest, queryset: QuerySet[AccessAttempt]) -> None:
        super().cleanup_expired_attempts(request, queryset)
