"""The URL map: the API under /api/, health and metrics, the admin, and the web UI (in a split
service, only its own contexts' URLs: ``OMS_SERVICE``, config/services.py)."""

from django.conf import settings
from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path, re_path
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


def _service_patterns(contexts: tuple[str, ...], *, split: bool) -> list[URLPattern | URLResolver]:
    """The URLs of the contexts this process serves (``OMS_SERVICE``, config/services.py).

    Every context (the default): the whole API, the console, the admin and the web UI. One split
    service: only its contexts' API, plus the ``/internal/`` reads other services make of it;
    the console, the admin and the web UI read every context, so they stay with ``all``.
    """
    orders, queries = "orders" in contexts, "queries" in contexts
    patterns: list[URLPattern | URLResolver] = []
    if orders:
        patterns.append(path("api/auth/", include("orders.auth_urls")))
    if not split:
        # The ops console API (ADMIN; docs/console.md).
        patterns.append(path("api/admin/", include("config.console.urls")))
    if orders and queries:
        patterns.append(path("api/orders", OrderCollectionView.as_view(), name="orders-collection"))
    elif orders or queries:
        view = OrderPlaceView if orders else OrderListView
        patterns.append(path("api/orders", view.as_view(), name="orders-collection"))
    patterns += [
        path("api/", include(f"{context}.urls"))
        for context in ("queries", "orders", "inventory", "payments")
        if context in contexts
    ]
    if split:
        from config.composition import internal

        routes = [
            ("inventory", path("internal/inventory/catalogue", internal.catalogue)),
            ("payments", path("internal/payments/<str:order_id>/history", internal.payment_history)),
            ("orders", path("internal/orders/<str:order_id>/customer", internal.order_customer)),
            ("orders", path("internal/orders/users/<str:username>/state", internal.user_state)),
        ]
        patterns += [route for context, route in routes if context in contexts]
    return patterns


urlpatterns = [
    *_service_patterns(settings.OMS_CONTEXTS, split=settings.SPLIT),
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
]
if not settings.SPLIT:
    urlpatterns += [
        path("admin/", admin.site.urls),
        path("", TemplateView.as_view(template_name="index.html"), name="web-ui"),
    ]

# Errors outside DRF views are problem documents too: no HTML, no stack trace.
handler400 = "config.problems.bad_request"
handler403 = "config.problems.permission_denied"
handler404 = "config.problems.not_found"
handler500 = "config.problems.server_error"
