"""The URL map: the API under /api/, health and metrics, the admin, and the web UI."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("api/", include("orders.urls")),
    path("api/", include("inventory.urls")),
    path("api/", include("payments.urls")),
    path("admin/", admin.site.urls),
]
