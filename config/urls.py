"""The URL map: the API under /api/, health and metrics, the admin, and the web UI."""

from django.contrib import admin
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from config.health import LiveView, ReadyView
from config.metrics_view import metrics_view
from config.problems import not_found as api_not_found
from orders.api import OrderPlaceView
from queries.api import OrderListView


class OrderCollectionView(OrderListView, OrderPlaceView):
    """/api/orders is one path for two contexts (docs/api.md "Endpoints"): GET is the query side's list,
    POST the command side's placement; each context keeps its own view."""


urlpatterns = [
    path("api/auth/", include("orders.auth_urls")),
    # The ops console API (ADMIN; docs/console.md).
    path("api/admin/", include("config.console.urls")),
    path("api/orders", OrderCollectionView.as_view(), name="orders-collection"),
    path("api/", include("queries.urls")),
    path("api/", include("orders.urls")),
    path("api/", include("inventory.urls")),
    path("api/", include("payments.urls")),
    path(
        "api/schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[AllowAny]),
        name="schema",
    ),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(
            url_name="schema", authentication_classes=[], permission_classes=[AllowAny]
        ),
        name="docs",
    ),
    # Any other path under /api/ is a 404 problem document, also with DEBUG on (Django would
    # otherwise answer its HTML debug page; handler404 below only applies with DEBUG off), and
    # for any method (a POST must not meet the CSRF check first: the API takes no cookies).
    re_path(r"^api/", csrf_exempt(api_not_found), name="api-not-found"),
    path("health/live", LiveView.as_view(), name="health-live"),
    path("health/ready", ReadyView.as_view(), name="health-ready"),
    # Prometheus text; sums every process when PROMETHEUS_MULTIPROC_DIR is set.
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("", TemplateView.as_view(template_name="index.html"), name="web-ui"),
]

# Errors outside DRF views are problem documents too: no HTML, no stack trace.
handler400 = "config.problems.bad_request"
handler403 = "config.problems.permission_denied"
handler404 = "config.problems.not_found"
handler500 = "config.problems.server_error"
