"""The URL map: the API under /api/, health and metrics, the admin, and the web UI."""

from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
