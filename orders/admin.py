"""Django admin for the people who call the API: customers (USER) and operators (ADMIN)."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

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
