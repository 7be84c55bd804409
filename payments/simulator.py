"""The built-in payment gateway: a simulator driven by the card token, with its own ledger.

The ledger (tables ``payments_gateway_charge`` and ``payments_gateway_refund``) stands for the
external system. It is written on connections of its own in autocommit, so no transaction of
the caller can roll a capture back — as with a real gateway. Like a client of a real gateway
keeps a few sockets, the process keeps a few ledger connections (at most
``PAYMENT_LEDGER_CONNECTIONS``) that the threads calling the gateway take in turn, one per call:
many charges in flight (``PAYMENT_CHARGE_WORKERS``) hold no connection each while they wait. A
connection is reused from call to call for as long as the database settings keep connections
(``CONN_MAX_AGE``; 0 closes it after each call); one that the server closed or that failed is
replaced, never reused.

Tokens (docs/architecture.md "Payments and the test tokens"): ``tok_declined`` is declined;
``tok_flaky`` fails with a transient error on its first call for a key, then captures;
``tok_slow`` captures but answers only after ``PAYMENT_TIMEOUT``; ``tok_late`` captures only
after ``PAYMENT_TIMEOUT`` has passed (the ledger shows nothing when the caller first asks) and
answers too late; ``tok_gateway_down`` fails every call and captures nothing; any other token
captures.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connections,
)
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.utils import load_backend
from django.utils import timezone

from .gateway import ChargeResult, LedgerStatus, RefundRejected, TransientGatewayError

# Test card tokens of README "Payment test tokens" (not secrets).
TOKEN_DECLINED = "tok_declined"  # noqa: S105
TOKEN_FLAKY = "tok_flaky"  # noqa: S105
TOKEN_SLOW = "tok_slow"  # noqa: S105
TOKEN_GATEWAY_DOWN = "tok_gateway_down"  # noqa: S105
TOKEN_LATE = "tok_late"  # noqa: S105

T = TypeVar("T")

CHARGES = "payments_gateway_charge"
REFUNDS = "payments_gateway_refund"


class SimulatedGateway:
    """The simulator behind the gateway port."""

    name = "simulator"

    def charge(self, *, idempotency_key: str, amount: Decimal, token: str) -> ChargeResult:
        """Charge by token; a key already captured returns that capture (never a second one)."""
        if token == TOKEN_LATE:
            # The request reaches the ledger only after the caller stopped waiting for it.
            time.sleep(_slow_delay())
        result = _on_ledger(lambda db: _charge(db, key=idempotency_key, amount=amount, token=token))
        if token == TOKEN_SLOW:
            # Captured, but the answer comes too late for any caller waiting PAYMENT_TIMEOUT.
            time.sleep(_slow_delay())
        return result

    def status(self, *, idempotency_key: str) -> LedgerStatus | None:
        """The ledger's entry for ``idempotency_key``."""

        def read(db: BaseDatabaseWrapper) -> Any:
            with db.cursor() as cursor:
                cursor.execute(
                    f"SELECT status, amount, refunded_amount FROM {CHARGES} WHERE idempotency_key = %s",
                    [idempotency_key],
                )
                return cursor.fetchone()

        row = _on_ledger(read)
        if row is None:
            return None
        return LedgerStatus(captured=row[0] == "CAPTURED", amount=_dec(row[1]), refunded=_dec(row[2]))

    def statuses(self, *, idempotency_keys: list[str]) -> dict[str, LedgerStatus]:
        """The ledger's entries for ``idempotency_keys`` (one query)."""
        if not idempotency_keys:
            return {}

        def read(db: BaseDatabaseWrapper) -> Any:
            marks = ", ".join(["%s"] * len(idempotency_keys))
            with db.cursor() as cursor:
                cursor.execute(
                    f"SELECT idempotency_key, status, amount, refunded_amount FROM {CHARGES} "
                    f"WHERE idempotency_key IN ({marks})",
                    idempotency_keys,
                )
                return cursor.fetchall()

        return {
            key: LedgerStatus(captured=status == "CAPTURED", amount=_dec(amount), refunded=_dec(refunded))
            for key, status, amount, refunded in _on_ledger(read)
        }

    def refund(self, *, idempotency_key: str, refund_key: str, amount: Decimal) -> Decimal:
        """Refund part or all of a capture; a repeated ``refund_key`` returns the first refund."""

        def refund(db: BaseDatabaseWrapper) -> Decimal:
            try:
                return _refund(db, key=idempotency_key, refund_key=refund_key, amount=amount)
            except IntegrityError:
                # A concurrent call with the same refund key won: answer with its refund.
                return _existing_refund(db, refund_key) or Decimal("0.00")

        return _on_ledger(refund)


def _charge(db: BaseDatabaseWrapper, *, key: str, amount: Decimal, token: str) -> ChargeResult:
    """One statement: the call counted on the key's entry and the token's outcome set, a capture
    left as it is (final: a key captured once stays captured with its amount)."""
    now = db.ops.adapt_datetimefield_value(timezone.now())
    first, again = _outcome(token, first_call=True), _outcome(token, first_call=False)
    captured = f"{CHARGES}.status = 'CAPTURED'"
    with db.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {CHARGES} (idempotency_key, token, amount, status, charge_calls, refunded_amount, "
            "created_at, updated_at) VALUES (%s, %s, %s, %s, 1, 0, %s, %s) "
            f"ON CONFLICT (idempotency_key) DO UPDATE SET charge_calls = {CHARGES}.charge_calls + 1, "
            "token = excluded.token, updated_at = excluded.updated_at, "
            f"status = CASE WHEN {captured} THEN 'CAPTURED' ELSE %s END, "
            f"amount = CASE WHEN {captured} THEN {CHARGES}.amount ELSE excluded.amount END "
            "RETURNING status, amount",
            [key, token, amount, first, now, now, again],
        )
        status, stored_amount = cursor.fetchone()
    if status == "CAPTURED":
        return ChargeResult(captured=True, amount=_dec(stored_amount))
    if status == "DECLINED":
        return ChargeResult(captured=False, amount=amount, detail="card declined")
    raise TransientGatewayError("the payment gateway is unavailable")


def _outcome(token: str, *, first_call: bool) -> str:
    """What a call with ``token`` makes of a key's entry that is not captured."""
    if token == TOKEN_DECLINED:
        return "DECLINED"
    if token == TOKEN_GATEWAY_DOWN or (token == TOKEN_FLAKY and first_call):
        return "FAILED"
    return "CAPTURED"


def _refund(db: BaseDatabaseWrapper, *, key: str, refund_key: str, amount: Decimal) -> Decimal:
    now = db.ops.adapt_datetimefield_value(timezone.now())
    db.set_autocommit(False)
    try:
        existing = _existing_refund(db, refund_key)
        if existing is not None:
            db.commit()
            return existing
        with db.cursor() as cursor:
            cursor.execute(
                f"UPDATE {CHARGES} SET refunded_amount = refunded_amount + %s, updated_at = %s "
                "WHERE idempotency_key = %s AND status = 'CAPTURED' "
                # CAST: SQLite would compare an untyped expression with a text parameter as text.
                "AND ROUND(amount - refunded_amount, 2) >= CAST(%s AS NUMERIC)",
                [amount, now, key, amount],
            )
            if cursor.rowcount != 1:
                raise RefundRejected(f"cannot refund {amount} of {key}")
            cursor.execute(
                f"INSERT INTO {REFUNDS} (refund_key, idempotency_key, amount, created_at) "
                "VALUES (%s, %s, %s, %s)",
                [refund_key, key, amount, now],
            )
        db.commit()
        return amount
    except BaseException:
        db.rollback()
        raise
    finally:
        db.set_autocommit(True)


def _existing_refund(db: BaseDatabaseWrapper, refund_key: str) -> Decimal | None:
    with db.cursor() as cursor:
        cursor.execute(f"SELECT amount FROM {REFUNDS} WHERE refund_key = %s", [refund_key])
        row = cursor.fetchone()
    return None if row is None else _dec(row[0])


_local = threading.local()  # the statements of this thread's current call


class _LedgerConnections:
    """The process's ledger connections: at most ``PAYMENT_LEDGER_CONNECTIONS``, one per call.

    A call takes the connection returned last (the warmest) or opens one while fewer are open;
    when all are in use it waits for one. A connection is shared between threads in turn, never
    at once.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._idle: list[BaseDatabaseWrapper] = []
        self._open = 0

    @property
    def idle(self) -> list[BaseDatabaseWrapper]:
        """The connections no call holds now, newest last."""
        with self._cond:
            return list(self._idle)

    def take(self) -> BaseDatabaseWrapper:
        limit = max(1, int(getattr(settings, "PAYMENT_LEDGER_CONNECTIONS", 8)))
        with self._cond:
            while not self._idle and self._open >= limit:
                self._cond.wait()
            if self._idle:
                db = self._idle.pop()
            else:
                self._open += 1
                db = None
        if db is not None and db.connection is not None and _broken(db):
            _discard(db)
        return db or _new_connection()

    def give(self, db: BaseDatabaseWrapper) -> None:
        """Back after a call (closed or not: a closed one opens again on its next use)."""
        with self._cond:
            self._idle.append(db)
            self._cond.notify()

    def close_idle(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._cond.notify_all()
        for db in idle:
            _discard(db)


_connections = _LedgerConnections()


def _on_ledger(work: Callable[[BaseDatabaseWrapper], T]) -> T:
    """``work`` on a ledger connection — once more on a new one when a kept connection fails at
    the first statement (the server dropped it while idle: nothing of ``work`` ran)."""
    db = _connections.take()
    try:
        kept = db.connection is not None
        _local.statements = 0
        try:
            return _run(db, work)
        except (OperationalError, InterfaceError):
            if not kept or _local.statements:
                raise
        _discard(db)
        return _run(db, work)
    finally:
        _connections.give(db)


def _count_statement(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
    result = execute(sql, params, many, context)
    _local.statements = getattr(_local, "statements", 0) + 1
    return result


def _run(db: BaseDatabaseWrapper, work: Callable[[BaseDatabaseWrapper], T]) -> T:
    """``work`` on ``db``, then the connection kept for the next call if sound."""
    try:
        return work(db)
    except BaseException:
        if db.connection is not None and (db.errors_occurred or _broken(db)):
            _discard(db)  # it may be dead: the next call opens a new one
        raise
    finally:
        _release(db)


def close_ledger() -> None:
    """Close the ledger connections no call holds now."""
    _connections.close_idle()


def _new_connection() -> BaseDatabaseWrapper:
    # Django's own health check (CONN_HEALTH_CHECKS) is a SELECT 1 before each call;
    # _broken() is a look at the socket instead, and errors discard the connection.
    params = {**connections.settings[DEFAULT_DB_ALIAS], "CONN_HEALTH_CHECKS": False}
    db = load_backend(params["ENGINE"]).DatabaseWrapper(params, DEFAULT_DB_ALIAS)
    db.inc_thread_sharing()  # taken by one calling thread after another
    db.execute_wrappers.append(_count_statement)
    return db


def _release(db: BaseDatabaseWrapper) -> None:
    """After a call: close the connection if it is too old (CONN_MAX_AGE), failed or left in a transaction."""
    if db.connection is None:
        return
    try:
        db.close_if_unusable_or_obsolete()
    except DatabaseError:
        _discard(db)


def _broken(db: BaseDatabaseWrapper) -> bool:
    """Whether an idle connection is known dead: closed, broken, or with bytes waiting (the server's
    goodbye, as after ``pg_terminate_backend`` or a restart) — without a round trip."""
    if db.vendor != "postgresql":
        return False
    conn = db.connection
    if conn is None:
        return False
    if conn.closed or conn.broken:
        return True
    try:
        readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    except Exception:  # noqa: BLE001 - any doubt: replace it
        return True
    return bool(readable)


def _discard(db: BaseDatabaseWrapper) -> None:
    """Close ``db`` (its wrapper stays, and opens a new connection on its next use)."""
    try:
        db.close()
    except Exception:  # noqa: BLE001 - a dead connection may fail to close; it is dropped anyway
        db.connection = None


def _slow_delay() -> float:
    """How late ``tok_slow`` answers and ``tok_late`` captures: past PAYMENT_TIMEOUT, well inside
    PAYMENT_CALL_LIMIT (the longest a call can take effect after it was made)."""
    timeout = float(settings.PAYMENT_TIMEOUT)
    return timeout + max(0.5, timeout / 2)


def _dec(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))
