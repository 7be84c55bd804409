"""What orders reads of other contexts, behind two ports: the catalogue and the payment history.

By default both are the owners' ``public.py``, in this process. When the owner runs as a service
of its own (``make split``, docs/architecture.md "Moving a context out"), the composition root
(config/composition/) replaces them once at start-up with adapters that ask that service over
HTTP; those raise a 503 problem (``config.problems.ServiceUnavailable``) when it does not answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from inventory import public as inventory_public
from payments import public as payments_public

# product ids -> {product id: ProductInfo} (unknown ids absent)
Catalogue = Callable[[Iterable[str]], dict[str, inventory_public.ProductInfo]]
# order id -> the payment's attempts, outcome and refunds (empty before payment)
PaymentHistory = Callable[[str], list[dict[str, Any]]]

_ports: dict[str, Any] = {}


def use(*, catalogue: Catalogue | None = None, payment_history: PaymentHistory | None = None) -> None:
    """Replace the in-process readers (the composition root, at start-up)."""
    if catalogue is not None:
        _ports["catalogue"] = catalogue
    if payment_history is not None:
        _ports["payment_history"] = payment_history


def catalogue(product_ids: Iterable[str]) -> dict[str, inventory_public.ProductInfo]:
    """The catalogue entries of ``product_ids`` that exist."""
    reader: Catalogue = _ports.get("catalogue", inventory_public.catalogue)
    return reader(product_ids)


def payment_history(order_id: str) -> list[dict[str, Any]]:
    """The order's payment history, oldest first."""
    reader: PaymentHistory = _ports.get("payment_history", payments_public.payment_history)
    return reader(order_id)
