"""The payments context's SQL for its commands: the batch's streams read together, the projection written.

A payment's truth is its event stream (appended through ``eventstore.store``); the
``payments_payment`` row is its projection, which the charge runners claim and the API lists.
The card token of a running charge round is held in ``payment_secret`` (never in an event):
held and forgotten in the transactions that start and end the round, a unit of work's at its
flush with one statement each (:func:`hold_secret`, :func:`forget_secret`).
The statements that take many rows are the dialect's (``eventstore.sql``: one array per column
on PostgreSQL, rows spelled out elsewhere), the others portable, so there is one recorder, with
no choice to make at start-up.

A charge runner's claim on the projection row (:func:`claim_charge`, :func:`release_charge`)
runs outside any unit of work, on purpose: one statement in autocommit, so that no lock is
held while the gateway is called. The gateway's own ledger (:mod:`payments.simulator`) is the
gateway's data, not this context's, and keeps its SQL there.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from eventstore.sql import bound_cursor, dialect, insert_rows, prepared
from eventstore.unit_of_work import buffer_of

from .domain import IN_FLIGHT, Payment
from .models import PaymentRecord, PaymentSecret

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
# Written with a new row, and over an existing one only when known ("" never forgets an owner:
# payments requested before the owner was recorded keep the one filled in by the migration).
_OWNER = "customer_id"


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
        if payment.customer_id:
            columns, values = (*columns, _OWNER), [*values, payment.customer_id]
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
    insert_rows(
        PaymentRecord,
        (*_UPDATED, _OWNER, "created_at", "order_id"),
        [(*_values(payment, now), payment.customer_id, now, payment.order_id)],
    )


def project_all(payments: Sequence[Payment], *, released: Collection[str] = ()) -> None:
    """Write the projection rows of many payments in one INSERT … ON CONFLICT (a batch's flush).

    A charge runner's claim is left as it is (commands never release one), but for the order
    ids in ``released``: decisions of runners that settled their payments, stored together
    (:mod:`payments.group_record`), whose claims one more statement clears.
    """
    if released:
        # Sorted: the rows are locked in one order whoever writes them.
        PaymentRecord.objects.filter(pk__in=sorted(released)).update(claimed_until=None)
    if not payments:
        return
    now = timezone.now()
    names = (*_UPDATED, _OWNER, "created_at", "order_id")
    rows = [(*_values(payment, now), payment.customer_id, now, payment.order_id) for payment in payments]
    quote = connection.ops.quote_name
    table, owner = quote(PaymentRecord._meta.db_table), quote(_OWNER)
    updates = ", ".join(
        [
            *(f"{quote(name)} = EXCLUDED.{quote(name)}" for name in _UPDATED),
            f"{owner} = CASE WHEN EXCLUDED.{owner} = '' THEN {table}.{owner} ELSE EXCLUDED.{owner} END",
        ]
    )
    # The dialect's INSERT: on PostgreSQL one array per column, the statement's text the same
    # whatever the batch's size (parsed once by the driver, planned once by the server).
    sql, params = dialect().insert(PaymentRecord, names, rows)
    with bound_cursor() as cursor:
        cursor.execute(f"{sql} ON CONFLICT ({quote('order_id')}) DO UPDATE SET {updates}", params)


Claimed = tuple[int, tuple[str, str] | None]


def claim_charge(order_id: str, *, until: datetime, now: datetime) -> Claimed | None:
    """Take the payment for one charge runner until ``until`` (a claim expired at ``now`` is
    taken over: its runner crashed). One statement, in autocommit.

    Returns the projection's version (the stream's, as of its last commit) and the card token
    held for the payment with its round's reference (read in the same statement), None when
    another runner holds the claim or there is no payment.
    """
    quote = connection.ops.quote_name
    column = quote("claimed_until")
    table, key = quote(PaymentRecord._meta.db_table), quote("order_id")
    secret = f"FROM {quote(PaymentSecret._meta.db_table)} s WHERE s.{key} = {table}.{key}"
    with bound_cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {column} = %s "
            f"WHERE {key} = %s AND ({column} IS NULL OR {column} < %s) "
            f"RETURNING {quote('version')}, (SELECT s.{quote('reference')} {secret}), "
            f"(SELECT s.{quote('token')} {secret})",
            [
                prepared(PaymentRecord, "claimed_until", until),
                order_id,
                prepared(PaymentRecord, "claimed_until", now),
            ],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return int(row[0]), None if row[2] is None else (str(row[1]), str(row[2]))


def release_charge(order_id: str) -> None:
    """Clear a charge runner's claim on a payment whose round did not settle it (one statement)."""
    quote = connection.ops.quote_name
    with bound_cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(PaymentRecord._meta.db_table)} SET {quote('claimed_until')} = NULL "
            f"WHERE {quote('order_id')} = %s",
            [order_id],
        )


def payment_owner(order_id: str) -> str | None:
    """The customer whose payment this is, as payments recorded it ("" unknown), None without one."""
    row = PaymentRecord.objects.filter(pk=order_id).exclude(status="").values_list(_OWNER, flat=True).first()
    return None if row is None else str(row)


# --- card tokens ---------------------------------------------------------------------------

# The columns of ``payment_secret``, the key first.
_SECRET = ("order_id", "reference", "token", "created_at")
# A secret this young is never swept: its round may have started (and committed) after the sweep
# read the payment's status. Its own transaction forgets it when the round ends.
_SWEEP_GRACE = timedelta(minutes=1)


class _Secrets:
    """The card tokens a transaction holds and forgets, written together (a unit's at its flush)."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[str, str, datetime]] = {}
        self.forgotten: set[str] = set()

    def write(self) -> None:
        quote = connection.ops.quote_name
        with bound_cursor() as cursor:
            if self.forgotten:
                condition, params = dialect().any_of("order_id", sorted(self.forgotten))
                cursor.execute(f"DELETE FROM {quote(PaymentSecret._meta.db_table)} WHERE {condition}", params)
            if self.held:
                rows = [(order_id, *held) for order_id, held in self.held.items()]
                sql, params = dialect().insert(PaymentSecret, _SECRET, rows)
                updates = ", ".join(f"{quote(name)} = EXCLUDED.{quote(name)}" for name in _SECRET[1:])
                cursor.execute(f"{sql} ON CONFLICT ({quote('order_id')}) DO UPDATE SET {updates}", params)
        self.held, self.forgotten = {}, set()


def hold_secret(order_id: str, *, reference: str, token: str) -> None:
    """Keep the card token of the round ``reference`` (caller's transaction; a unit's at its flush)."""
    secrets, buffered = buffer_of(_Secrets)
    secrets.forgotten.discard(order_id)
    secrets.held[order_id] = (reference, token, timezone.now())
    if not buffered:
        secrets.write()


def forget_secret(order_id: str) -> None:
    """Delete the card token of ``order_id`` (its round ended: no call will use it again)."""
    secrets, buffered = buffer_of(_Secrets)
    secrets.held.pop(order_id, None)
    secrets.forgotten.add(order_id)
    if not buffered:
        secrets.write()


def secret_of(order_id: str, *, reference: str) -> str | None:
    """The card token held for the round ``reference`` of ``order_id``, None when none is held."""
    row = (
        PaymentSecret.objects.filter(pk=order_id, reference=reference).values_list("token", flat=True).first()
    )
    return None if row is None else str(row)


def sweep_secrets(*, now: datetime | None = None) -> int:
    """Delete the card tokens of payments no longer running (a round's end that did not forget its
    own, or a payment row removed by hand); returns how many. One statement."""
    now = now or timezone.now()
    quote = connection.ops.quote_name
    secret, payment = quote(PaymentSecret._meta.db_table), quote(PaymentRecord._meta.db_table)
    key, created = quote("order_id"), quote("created_at")
    running = [status.value for status in IN_FLIGHT]
    marks = ", ".join(["%s"] * len(running))
    with bound_cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {secret} WHERE {created} < %s AND NOT EXISTS (SELECT 1 FROM {payment} p "
            f"WHERE p.{key} = {secret}.{key} AND p.{quote('status')} IN ({marks}))",
            [prepared(PaymentSecret, "created_at", now - _SWEEP_GRACE), *running],
        )
        return int(cursor.rowcount)
