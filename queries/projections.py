"""The projections: order and payment events applied to the read models, in order per stream.

A projection applies each event of one stream exactly once and in version order, using
``eventstore.ordering.apply_in_order`` with a cursor name that includes the generation being
written (``queries.orders.g3``); so a rebuild's cursors live and die with its tables, and the
live cursors never claim an event the new tables do not hold.

Applying an event decides what the read model becomes and buffers it (:class:`_Writes`); the
recorder (:mod:`queries.recorder`) writes the buffer once: at the end of the event outside a
unit of work, or once for a consumer's whole batch inside one. A batch is prepared first
(:func:`prepare_batch`): the cursors of its streams are claimed together, so the common case —
each stream's events the next ones its cursor expects — costs one statement per table for the
whole batch; anything else takes the one by one path of ``apply_in_order``.

Every live application (bus delivery or catch-up) holds a shared advisory lock of its
projection for its transaction; ``rebuild_projections`` takes the exclusive one to swap
generations, which briefly pauses the live projector (PostgreSQL; SQLite has one writer).
"""

from __future__ import annotations

import threading
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import partial

from django.db import transaction

from eventstore.messages import Message
from eventstore.ordering import apply_batch_in_order, apply_in_order
from eventstore.unit_of_work import buffer_of

from . import cache
from .contract import (
    ORDER_CANCELLED,
    ORDER_COMPLETED,
    ORDER_CREATED,
    ORDER_EVENTS,
    ORDER_STATUS_UPDATED,
    PAYMENT_EVENTS,
    PAYMENT_PROCESSED,
)
from .models import PaymentReadModel, ProjectionState
from .public import CONTEXT
from .recorder import Claim, NewOrder, OrderChange, PaymentOutcome, recorder


class _Writes:
    """The read-model rows one transaction decided on, written together by the recorder.

    Later events of a batch fold into the rows of earlier ones (an order created and completed
    in one batch is inserted once, completed), so each table takes one statement per batch.
    """

    def __init__(self) -> None:
        self.created: dict[tuple[int, str], NewOrder] = {}
        self.changed: dict[tuple[int, str], OrderChange] = {}
        self.payments: dict[tuple[int, str], PaymentOutcome] = {}
        self.claimed: set[tuple[str, str]] = set()  # (cursor name, message id) applied by the preparer

    def write(self) -> None:
        """Write what is buffered; the touched customers' caches are invalidated after commit."""
        store = recorder()
        store.insert_orders(list(self.created.values()))
        customers = {order.customer_id for order in self.created.values()}
        customers |= store.change_orders(list(self.changed.values()))
        store.upsert_payments(list(self.payments.values()))
        self.created.clear()
        self.changed.clear()
        self.payments.clear()
        _invalidate_after_commit(customers)


def _writes() -> tuple[_Writes, bool]:
    """This transaction's buffer, and whether the unit of work writes it (else the caller does)."""
    return buffer_of(_Writes)


# Applies one event to one generation, into the transaction's buffer.
Applier = Callable[[_Writes, int, Message], None]


@dataclass(frozen=True, slots=True)
class Projection:
    """A read model fed by some event types."""

    name: str
    event_types: tuple[str, ...]
    apply: Applier
    clear: Callable[[int], None]

    def consumer(self, generation: int) -> str:
        """The stream-cursor name of one generation of this projection."""
        return f"{CONTEXT}.{self.name}.g{generation}"

    @property
    def lock_key(self) -> int:
        """The advisory lock that serialises the live projector and a generation swap."""
        return zlib.crc32(f"{CONTEXT}.projection.{self.name}".encode())


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _apply_order(writes: _Writes, generation: int, event: Message) -> None:
    data = event.data
    at = _moment(event.occurred_at)
    key = (generation, event.aggregate_id)
    if event.type == ORDER_CREATED:
        writes.created[key] = _new_order(generation, event, at)
        return
    set_reason, reason = False, None
    if event.type == ORDER_STATUS_UPDATED:
        status = str(data["status"])
    elif event.type == ORDER_COMPLETED:
        status = "COMPLETED"
    elif event.type == ORDER_CANCELLED:
        status = "CANCELLED"
    else:  # OrderFailed
        status, set_reason, reason = "FAILED", True, str(data.get("reason") or "") or None
    version = event.version or 0
    created = writes.created.get(key)
    if created is not None:  # created in this transaction: the row is inserted as it ends up
        created.status, created.updated_at, created.version = status, at, version
        if set_reason:
            created.failure_reason = reason
        return
    # A stream without OrderCreated is not an order: its UPDATE finds no row and changes nothing.
    change = writes.changed.get(key)
    if change is None:
        writes.changed[key] = OrderChange(
            generation, event.aggregate_id, status, at, version, set_reason, reason
        )
        return
    change.status, change.updated_at, change.version = status, at, version
    if set_reason:
        change.set_reason, change.failure_reason = True, reason


def _new_order(generation: int, event: Message, at: datetime) -> NewOrder:
    data = event.data
    items = list(data.get("items") or [])
    customer_id = str(data["customer_id"])
    words = [str(item.get("product_name", "")) for item in items]
    return NewOrder(
        generation=generation,
        order_id=event.aggregate_id,
        customer_id=customer_id,
        status="PENDING",
        total_amount=Decimal(str(data["total_amount"])),
        failure_reason=None,
        created_at=at,
        updated_at=at,
        version=event.version or 1,
        search_text=" ".join([*words, event.aggregate_id, customer_id]),
        lines=[
            (
                str(item["product_id"]),
                str(item.get("product_name", "")),
                int(item["quantity"]),
                Decimal(str(item["price"])),
            )
            for item in items
        ],
    )


def _apply_payment(writes: _Writes, generation: int, event: Message) -> None:
    # A capture is final: a later failure report never turns it back (the payment stream's
    # other events, loaded to fill version gaps, change nothing here).
    if event.type not in PAYMENT_EVENTS:
        return
    key = (generation, str(event.data["order_id"]))
    known = writes.payments.get(key)
    if known is not None and known.outcome == PaymentReadModel.CAPTURED:
        return
    outcome = PaymentReadModel.CAPTURED if event.type == PAYMENT_PROCESSED else PaymentReadModel.FAILED
    writes.payments[key] = PaymentOutcome(generation, key[1], outcome, _moment(event.occurred_at))


def _clear_orders(generation: int) -> None:
    recorder().clear_orders(generation)


def _clear_payments(generation: int) -> None:
    recorder().clear_payments(generation)


PROJECTIONS: dict[str, Projection] = {
    "orders": Projection("orders", ORDER_EVENTS, _apply_order, _clear_orders),
    "payments": Projection("payments", PAYMENT_EVENTS, _apply_payment, _clear_payments),
}


def projections_for(event_type: str) -> list[Projection]:
    """The projections that read events of this type."""
    return [p for p in PROJECTIONS.values() if event_type in p.event_types]


def hold_live_lock(projection: Projection, *, exclusive: bool = False) -> None:
    """Take the projection's advisory lock until the transaction ends (PostgreSQL only)."""
    recorder().hold_lock(projection.lock_key, exclusive=exclusive)


def state_of(projection: Projection) -> ProjectionState:
    """The projection's state row (created at its first use)."""
    state, _ = ProjectionState.objects.get_or_create(name=projection.name)
    return state


def active_generation(name: str) -> int:
    """The generation the live API reads for projection ``name``.

    Read where the caller's other reads go (the replica inside ``config.replica.read``), so a
    generation swapped by a rebuild is seen together with its rows, never before them.
    """
    generation = ProjectionState.objects.filter(name=name).values_list("generation", flat=True).first()
    return generation if generation is not None else state_of(PROJECTIONS[name]).generation


class _AfterCommit:
    """A callback run once the current transaction commits, shared by the work of that transaction.

    It stands for the transaction while it is registered and has not run: Django drops it
    when the transaction, or the savepoint it was registered in, rolls back (and with it
    whatever that savepoint did, such as an advisory lock taken there).
    """

    __slots__ = ("ran",)

    def __init__(self) -> None:
        self.ran = False

    def __call__(self) -> None:
        self.ran = True
        self.run()

    def run(self) -> None:
        """What to do after the commit."""

    def pending(self) -> bool:
        """Whether this callback still waits for the commit of the current transaction."""
        connection = transaction.get_connection()
        if self.ran or not connection.in_atomic_block:
            return False
        return any(entry[1] is self for entry in connection.run_on_commit)


class _LiveGeneration(_AfterCommit):
    """The live generation read under the projection's shared lock, held until the commit."""

    __slots__ = ("generation",)

    def __init__(self, generation: int) -> None:
        super().__init__()
        self.generation = generation


class _Invalidation(_AfterCommit):
    """The cache counters to bump once the transaction commits: all its projected events at once."""

    __slots__ = ("customers",)

    def __init__(self, customers: set[str]) -> None:
        super().__init__()
        self.customers = set(customers)

    def run(self) -> None:
        cache.bump(customer_ids=self.customers)


class _TransactionState(threading.local):
    def __init__(self) -> None:
        self.generations: dict[str, _LiveGeneration] = {}
        self.invalidation: _Invalidation | None = None


_current = _TransactionState()


def _invalidate_after_commit(customers: set[str]) -> None:
    """Bump these customers' (and the global) cache counters once, after the transaction commits."""
    if not customers:
        return
    pending = _current.invalidation
    if pending is not None and pending.pending():
        pending.customers.update(customers)
        return
    _current.invalidation = _Invalidation(customers)
    transaction.on_commit(_current.invalidation)


def _live_generation(projection: Projection) -> int:
    """The live generation, under the projection's shared lock (taken once per transaction)."""
    held = _current.generations.get(projection.name)
    if held is not None and held.pending():
        return held.generation
    hold_live_lock(projection)
    held = _LiveGeneration(active_generation(projection.name))
    _current.generations[projection.name] = held
    transaction.on_commit(held)
    return held.generation


def forget_live_generation(name: str) -> None:
    """Drop the generation remembered for this transaction (the caller has just swapped it)."""
    _current.generations.pop(name, None)


def apply_event(projection: Projection, generation: int, message: Message) -> int:
    """Apply ``message`` (and any missing earlier version) to ``generation``; returns how many.

    Runs in the caller's transaction; the list and search caches of the touched customers
    are invalidated once it commits (once for all the events of the transaction).
    """
    writes, buffered = _writes()
    consumer = projection.consumer(generation)
    if (consumer, message.message_id) in writes.claimed:
        return 1  # applied with its batch by prepare_batch
    applied = apply_in_order(consumer, message, lambda event: projection.apply(writes, generation, event))
    if not buffered:
        writes.write()
    return applied


def project(message: Message) -> int:
    """Apply a delivered event to the live generation of every projection that reads it.

    The shared lock and the generation read are taken once per transaction: while the lock
    is held no generation swap can commit, so the generation read under it stays the live one.
    """
    applied = 0
    for projection in projections_for(message.type):
        applied += apply_event(projection, _live_generation(projection), message)
    return applied


def prepare_batch(messages: Sequence[Message]) -> None:
    """Apply a batch's events with their cursors claimed together, stream by stream.

    A stream whose events in the batch are the next versions its cursor expects (the usual
    case) is claimed in one statement with every other such stream, and its events are
    applied here, in version order; the others go through
    :func:`eventstore.ordering.apply_batch_in_order` (a few statements for all of them).
    """
    writes, _ = _writes()
    for projection in PROJECTIONS.values():
        unique = {m.message_id: m for m in messages if m.type in projection.event_types and m.version}
        if not unique:
            continue
        streams: dict[str, list[Message]] = defaultdict(list)
        for message in unique.values():
            streams[message.aggregate_id].append(message)
        claims = []
        for aggregate_id, events in streams.items():
            events.sort(key=lambda event: event.version or 0)
            first, last = events[0].version or 0, events[-1].version or 0
            if last - first + 1 == len(events) == len({event.version for event in events}):
                claims.append(Claim(aggregate_id, first, last))
        generation = _live_generation(projection)
        consumer = projection.consumer(generation)
        claimed = recorder().claim(consumer, claims) if claims else set()
        for aggregate_id in sorted(claimed):
            for event in streams[aggregate_id]:
                projection.apply(writes, generation, event)
        # The rest (a stream this projection reads only some event types of, a gap, a duplicate):
        # its cursors locked together and what each stream lacks read from the store at once.
        rest = [event for stream, events in streams.items() if stream not in claimed for event in events]
        apply_batch_in_order(consumer, rest, partial(projection.apply, writes, generation))
        writes.claimed.update((consumer, message_id) for message_id in unique)
