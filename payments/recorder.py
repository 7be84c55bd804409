"""The payments context's SQL for its commands: the batch's streams read together, the projection written.

A payment's truth is its event stream (appended through ``eventstore.store``); the
``payments_payment`` row is its projection, which the charge runners claim and the API lists.
The statements here are portable (PostgreSQL and SQLite take the same ones), so there is one
recorder, with no choice to make at start-up.

The gateway's own ledger (:mod:`payments.simulator`) and the charge runner's claim
(:mod:`payments.charging`) keep their SQL where it is: they run outside these transactions,
on purpose.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone

from eventstore.sql import bound_cursor, insert_rows, prepared

from .domain import Payment
from .models import PaymentRecord

# The projection's columns (named as the model's fields, which set no db_column).
_UPDATED = (
    "payment_id",
    "status",
    "amount",
    "refunded_amount",
    "attempts",
    "captures",
    "pending_refunds",
    "version",
    "updated_at",
)
_RELEASED = ("claimed_until",)


def _values(payment: Payment, now: datetime) -> list[Any]:
    return [
        payment.payment_id,
        payment.status.value if payment.status else "",
        payment.amount,
        payment.refunded,
        payment.attempts,
        payment.captures,
        len(payment.pending_refunds),
        payment.version,
        now,
    ]


def project(payment: Payment, *, first: bool, release_claim: bool = False) -> None:
    """Write one payment's projection row, in one statement (the charge runner's path).

    An INSERT with the stream's first event (no row can exist before it: the row is written
    with every event, and this transaction holds version 1), else an UPDATE of the row. The
    event appended just before holds the stream's next version, so no other writer of this
    payment gets here meanwhile. ``release_claim`` also clears a charge runner's claim.
    """
    now = timezone.now()
    values = _values(payment, now)
    if not first:
        columns = _UPDATED + _RELEASED if release_claim else _UPDATED
        if release_claim:
            values.append(None)
        quote = connection.ops.quote_name
        sets = ", ".join(f"{quote(name)} = %s" for name in columns)
        params = [prepared(PaymentRecord, name, value) for name, value in zip(columns, values, strict=True)]
        with bound_cursor() as cursor:
            cursor.execute(
                f"UPDATE {quote(PaymentRecord._meta.db_table)} SET {sets} WHERE {quote('order_id')} = %s",
                [*params, payment.order_id],
            )
            if cursor.rowcount:
                return
        # No row (removed by hand): write it again.
    insert_rows(PaymentRecord, (*_UPDATED, "created_at", "order_id"), [(*values, now, payment.order_id)])


def project_all(payments: Sequence[Payment]) -> None:
    """Write the projection rows of many payments in one INSERT … ON CONFLICT (a batch's flush).

    A charge runner's claim is left as it is: commands never release one.
    """
    if not payments:
        return
    now = timezone.now()
    names = (*_UPDATED, "created_at", "order_id")
    row = "(" + ", ".join(["%s"] * len(names)) + ")"
    params = [
        prepared(PaymentRecord, name, value)
        for payment in payments
        for name, value in zip(names, (*_values(payment, now), now, payment.order_id), strict=True)
    ]
    quote = connection.ops.quote_name
    updates = ", ".join(f"{quote(name)} = EXCLUDED.{quote(name)}" for name in _UPDATED)
    with bound_cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(PaymentRecord._meta.db_table)} ({', '.join(quote(n) for n in names)}) "
            f"VALUES {', '.join([row] * len(payments))} "
            f"ON CONFLICT ({quote('order_id')}) DO UPDATE SET {updates}",
            params,
        )
