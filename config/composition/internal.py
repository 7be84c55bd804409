"""The ``/internal/`` endpoints a split service answers for the others (config/composition/remote.py).

Mounted only when the process is one service of ``make split`` and serves the owning context;
not part of the public API (no schema entry, not under ``/api/``). A caller shows the key every
service of the deployment derives from the shared secret (``X-OMS-Service-Key``); without it the
answer is a 403 problem document. Each endpoint answers from its context's ``public.py``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from rest_framework.utils.encoders import JSONEncoder

from .remote import KEY_HEADER, service_key

View = Callable[..., HttpResponse]


def _json(body: Any, status: int = 200) -> HttpResponse:
    # DRF's encoder: dates and decimals as the public API renders them.
    return HttpResponse(json.dumps(body, cls=JSONEncoder), status=status, content_type="application/json")


def _problem(status: int, code: str, title: str) -> HttpResponse:
    body = {"type": f"urn:oms:problem:{code}", "title": title, "status": status}
    return HttpResponse(json.dumps(body), status=status, content_type="application/problem+json")


def internal(view: View) -> View:
    """GET only, and only for a caller that shows the service key."""

    @require_GET
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        shown = request.headers.get(KEY_HEADER, "")
        if not hmac.compare_digest(shown.encode(), service_key().encode()):
            return _problem(403, "permission_denied", "Only the services of this deployment may call this.")
        return view(request, *args, **kwargs)

    guarded.__name__ = view.__name__
    guarded.__doc__ = view.__doc__
    return guarded


@internal
def catalogue(request: HttpRequest) -> HttpResponse:
    """``GET /internal/inventory/catalogue?id=…&id=…`` — the known products among the ids."""
    from inventory import public as inventory_public

    products = inventory_public.catalogue(request.GET.getlist("id"))
    return _json(
        {
            "products": {
                pid: {
                    "name": info.name,
                    "price": str(info.price),
                    "available": info.available,
                    "reserved": info.reserved,
                }
                for pid, info in products.items()
            }
        }
    )


@internal
def payment_history(request: HttpRequest, order_id: str) -> HttpResponse:
    """``GET /internal/payments/{order_id}/history`` — the payment's history (empty before payment)."""
    from payments import public as payments_public

    return _json({"history": payments_public.payment_history(str(order_id))})


@internal
def order_customer(request: HttpRequest, order_id: str) -> HttpResponse:
    """``GET /internal/orders/{order_id}/customer`` — whose order it is; 404 when there is none."""
    from orders import public as orders_public

    customer = orders_public.order_customer(str(order_id))
    if customer is None:
        return _problem(404, "not_found", "No such order.")
    return _json({"customer_id": customer})


@internal
def user_state(request: HttpRequest, username: str) -> HttpResponse:
    """``GET /internal/orders/users/{username}/state`` — the user's active flag, role and customer
    id now (``{"active": false}`` for no such user), for the services that verify tokens."""
    from orders import public as orders_public

    return _json(orders_public.user_state(str(username)))
