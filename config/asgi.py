"""ASGI entry point of the web process (``gunicorn -k uvicorn_worker.UvicornWorker config.asgi:application``).

POST /api/orders goes to its thin endpoint (orders/asgi.py: the same contract without Django's
request cycle, and with group commit on an event loop); every other request, the same path's
GET included, goes to Django's ASGI handler — the rest of the API stays on DRF.
"""

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

django_application = get_asgi_application()  # sets Django up: the import below needs the apps

from django.conf import settings  # noqa: E402

from orders.asgi import PATH, PlaceOrderEndpoint  # noqa: E402

# Only where orders is served (every split service but orders leaves the path to Django's URLs).
place_order = PlaceOrderEndpoint() if "orders" in settings.OMS_CONTEXTS else None


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Route one connection's request: the order placement to its endpoint, the rest to Django."""
    if place_order and scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == PATH:
        await place_order(scope, receive, send)
    else:
        await django_application(scope, receive, send)
