"""Reading another service's data over HTTP, when its context runs as a service of its own.

``make split`` runs each context as its own service (docs/architecture.md "Moving a context out").
The few reads that cross a context boundary inside a request — orders pricing a placement from
the inventory's catalogue, orders showing an order's payment history, the payments operator's
charge asking orders whose order it is — then go to the owning service's ``/internal/`` endpoints
(config/composition/internal.py) instead of its ``public.py``. Each call is bounded by
``SERVICE_CALL_TIMEOUT``; a service that does not answer, or answers an error, is a 503 problem
document for the caller's client (never a 500), naming the service, not its address.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.conf import settings

from config.problems import ServiceUnavailable
from inventory import public as inventory_public

logger = logging.getLogger(__name__)

KEY_HEADER = "X-OMS-Service-Key"


def service_key() -> str:
    """The key a service shows another one's ``/internal/`` endpoints: derived from the shared
    ``SECRET_KEY`` (every service of one deployment has it, as it has the JWT signing key)."""
    return hmac.new(settings.SECRET_KEY.encode(), b"oms-internal-v1", hashlib.sha256).hexdigest()


class RemoteService:
    """GET JSON from one service, or raise :class:`ServiceUnavailable`."""

    def __init__(self, name: str, base_url: str) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")

    def get(self, path: str, params: list[tuple[str, str]] | None = None) -> Any:
        """The decoded body of a 200; ``None`` for a 404; a 503 problem for anything else."""
        url = f"{self.base_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {KEY_HEADER: service_key(), "Accept": "application/json"}
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - a configured service URL
        try:
            with urllib.request.urlopen(request, timeout=settings.SERVICE_CALL_TIMEOUT) as answer:  # noqa: S310
                return json.loads(answer.read())
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            logger.warning("the %s service answered %s to %s", self.name, error.code, path)
        except (OSError, ValueError) as error:  # refused, timed out, reset, not JSON
            logger.warning("the %s service did not answer %s: %s", self.name, path, type(error).__name__)
        raise ServiceUnavailable(f"The {self.name} service does not answer; try again later.")


class RemoteCatalogue:
    """orders' catalogue port (orders/neighbours.py) over HTTP to the inventory service."""

    def __init__(self, service: RemoteService) -> None:
        self.service = service

    def __call__(self, product_ids: Iterable[str]) -> dict[str, inventory_public.ProductInfo]:
        wanted = sorted({pid for pid in product_ids if isinstance(pid, str)})
        if not wanted:
            return {}
        body = self.service.get("/internal/inventory/catalogue", [("id", pid) for pid in wanted]) or {}
        return {
            pid: inventory_public.ProductInfo(
                product_id=pid,
                name=str(item["name"]),
                price=Decimal(str(item["price"])),
                available=int(item["available"]),
                reserved=int(item["reserved"]),
            )
            for pid, item in body.get("products", {}).items()
        }


class RemotePaymentHistory:
    """orders' payment-history port over HTTP to the payments service."""

    def __init__(self, service: RemoteService) -> None:
        self.service = service

    def __call__(self, order_id: str) -> list[dict[str, Any]]:
        body = self.service.get(f"/internal/payments/{urllib.parse.quote(str(order_id))}/history")
        return list((body or {}).get("history", []))


class RemoteOrderDirectory:
    """payments' order directory (``payments.public.use_order_directory``) over HTTP to orders."""

    def __init__(self, service: RemoteService) -> None:
        self.service = service

    def __call__(self, order_id: str) -> str | None:
        body = self.service.get(f"/internal/orders/{urllib.parse.quote(str(order_id))}/customer")
        if body is None:
            return None
        return str(body["customer_id"])


class RemoteUserState:
    """Token checks' user-state reader (``orders.public.use_user_state_reader``) over HTTP to orders."""

    def __init__(self, service: RemoteService) -> None:
        self.service = service

    def __call__(self, username: str) -> dict[str, Any]:
        body = self.service.get(f"/internal/orders/users/{urllib.parse.quote(username, safe='')}/state")
        return dict(body) if isinstance(body, dict) else {"active": False}
