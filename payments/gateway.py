"""The payment gateway port: what the payments context needs from an external payment system.

An adapter implements :class:`PaymentGateway`. Business answers (captured, declined) are
return values; a transient failure raises :class:`TransientGatewayError` and a call that
does not answer in time raises :class:`GatewayTimeout` (see :func:`call_with_timeout`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, TypeVar

T = TypeVar("T")


class GatewayError(Exception):
    """The gateway could not give an answer."""


class TransientGatewayError(GatewayError):
    """A failure worth retrying (the gateway is down or overloaded)."""


class GatewayTimeout(GatewayError):
    """No answer in time: the call may or may not have taken effect."""


class RefundRejected(GatewayError):
    """The gateway refuses the refund (nothing captured, or more than is left)."""


@dataclass(frozen=True, slots=True)
class ChargeResult:
    """The gateway's answer to a charge: captured, or declined (a business failure)."""

    captured: bool
    amount: Decimal
    detail: str = ""


@dataclass(frozen=True, slots=True)
class LedgerStatus:
    """What the gateway's ledger holds for an idempotency key."""

    captured: bool
    amount: Decimal
    refunded: Decimal


class PaymentGateway(Protocol):
    """The port: charge, ask, refund — all keyed so that a repeated call has no second effect."""

    name: str

    def charge(self, *, idempotency_key: str, amount: Decimal, token: str) -> ChargeResult:
        """Capture ``amount``; a repeated key returns the existing capture."""
        ...

    def status(self, *, idempotency_key: str) -> LedgerStatus | None:
        """The ledger's entry for the key, or None when the gateway never saw it."""
        ...

    def refund(self, *, idempotency_key: str, refund_key: str, amount: Decimal) -> Decimal:
        """Refund ``amount`` of the capture; a repeated ``refund_key`` returns the first refund."""
        ...


def call_with_timeout(call: Callable[[], T], *, timeout: float) -> T:
    """Run ``call`` in a worker thread and wait at most ``timeout`` seconds for its answer.

    A late answer is abandoned (the daemon thread finishes on its own): the caller must then
    treat the outcome as unknown and ask the ledger.
    """
    outcome: dict[str, object] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed over to the waiting caller
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="payment-gateway-call", daemon=True).start()
    if not done.wait(timeout):
        raise GatewayTimeout(f"no answer from the payment gateway within {timeout:g}s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def default_gateway() -> PaymentGateway:
    """The gateway this deployment talks to: the built-in simulator."""
    from .simulator import SimulatedGateway

    return SimulatedGateway()


def ensure_outside_transaction() -> None:
    """Refuse to call the gateway inside a database transaction (it would hold locks meanwhile)."""
    from django.db import connection

    if connection.in_atomic_block:
        raise RuntimeError("the payment gateway must not be called inside a database transaction")
