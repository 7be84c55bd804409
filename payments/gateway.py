"""The payment gateway port: what the payments context needs from an external payment system.

An adapter implements :class:`PaymentGateway`. Business answers (captured, declined) are
return values; a transient failure raises :class:`TransientGatewayError` and a call that
does not answer in time raises :class:`GatewayTimeout` (see :func:`call_with_timeout`).
"""

from __future__ import annotations

import queue
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
    """No answer in time: the call may or may not have taken effect.

    ``call_done`` is set once the abandoned call has ended (answered or failed): until then it
    may still take effect at the gateway.
    """

    def __init__(self, message: str, *, call_done: threading.Event | None = None) -> None:
        super().__init__(message)
        self.call_done = call_done


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

    def statuses(self, *, idempotency_keys: list[str]) -> dict[str, LedgerStatus]:
        """The ledger's entries for many keys at once (keys the gateway never saw are absent)."""
        ...

    def refund(self, *, idempotency_key: str, refund_key: str, amount: Decimal) -> Decimal:
        """Refund ``amount`` of the capture; a repeated ``refund_key`` returns the first refund."""
        ...


def call_with_timeout(call: Callable[[], T], *, timeout: float) -> T:
    """Run ``call`` in a worker thread and wait at most ``timeout`` seconds for its answer.

    A late answer is abandoned (the daemon thread finishes on its own): the caller must then
    treat the outcome as unknown and ask the ledger, and must not take the call for a failure
    before it ended (``GatewayTimeout.call_done``) or can no longer land. The worker threads
    are reused (an idle one takes the call, else a new one starts at once: a call never waits
    for a free thread), so what a gateway keeps per thread — the simulator's ledger
    connection — is reused too.
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

    _callers.submit(run)
    if not done.wait(timeout):
        raise GatewayTimeout(f"no answer from the payment gateway within {timeout:g}s", call_done=done)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def release_idle_callers() -> int:
    """End the gateway-call threads that are idle now; returns how many."""
    return _callers.release_idle()


_STOP = object()


class _CallerThreads:
    """Daemon threads that run gateway calls, reused while they keep getting work.

    A call goes to the thread that became idle last (the others can run out their
    ``idle_seconds`` and end), or to a new thread when none is idle.
    """

    def __init__(self, *, idle_seconds: float) -> None:
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[object]] = []  # each idle thread's inbox, last idle on top

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._idle:
                self._idle.pop().put(job)
                return
        threading.Thread(target=self._work, args=(job,), name="payment-gateway-call", daemon=True).start()

    def release_idle(self) -> int:
        with self._lock:
            idle, self._idle = self._idle, []
            for inbox in idle:
                inbox.put(_STOP)
        return len(idle)

    def _work(self, job: Callable[[], None]) -> None:
        inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        while True:
            job()
            next_job = self._next(inbox)
            if next_job is None:
                return
            job = next_job

    def _next(self, inbox: queue.SimpleQueue[object]) -> Callable[[], None] | None:
        with self._lock:
            self._idle.append(inbox)
        try:
            job = inbox.get(timeout=self.idle_seconds)
        except queue.Empty:
            with self._lock:
                if inbox in self._idle:
                    self._idle.remove(inbox)
                    return None
            # Handed a call just as the wait ended: it is in the inbox already (put under the lock).
            job = inbox.get_nowait()
        return None if job is _STOP else job  # type: ignore[return-value]


_callers = _CallerThreads(idle_seconds=60.0)


def default_gateway() -> PaymentGateway:
    """The gateway this deployment talks to: the built-in simulator."""
    from .simulator import SimulatedGateway

    return SimulatedGateway()


def ensure_outside_transaction() -> None:
    """Refuse to call the gateway inside a database transaction (it would hold locks meanwhile)."""
    from django.db import transaction

    if transaction.get_connection().in_atomic_block:
        raise RuntimeError("the payment gateway must not be called inside a database transaction")
