"""The payments context's commands: ProcessPayment, ReportPaymentOutcome and RefundPayment (from the saga).

Each handler runs inside the consumer's transaction with its inbox row: it only records the
request. The gateway is called after commit (``transaction.on_commit``), outside any
transaction — the charge on the consumer process's charge pool when one runs
(:mod:`payments.charge_pool`), else inline; a crash in between is picked up by
``payments.tasks.resume_payments``. A batch of commands shares one transaction: its payments
are loaded together first (:func:`payments.handlers.prepare_batch`), and every charge it
starts is handed over once the whole batch has committed.
"""

from __future__ import annotations

from functools import partial

from django.db import transaction

from eventstore.commands import validated
from eventstore.messages import Message
from eventstore.registry import handles, prepares
from eventstore.tracing import in_current_context

from .charge_pool import charge_pool
from .charging import run_charge
from .domain import Payment
from .handlers import load_payment, prepare_batch, report_outcome, request_payment, request_refund, snapshot
from .public import CONTEXT
from .refunds import run_refunds
from .serializers import ProcessPaymentInput, RefundPaymentInput, ReportPaymentOutcomeInput

prepares(CONTEXT)(prepare_batch)


@handles(CONTEXT, commands=("ProcessPayment",))
def process_payment(message: Message) -> None:
    """Record the charge request (and whose order it is); charge after commit."""
    data = validated(ProcessPaymentInput, message)
    order_id = str(data["order_id"])
    payment, must_run = request_payment(
        order_id=order_id,
        amount=data["amount"],
        method=data["method"],
        token=data["token"],
        customer_id=str(data.get("customer_id") or ""),
        command_id=message.message_id,
        strict=False,
    )
    if must_run:
        _charge_after_commit(order_id, payment)


@handles(CONTEXT, commands=("ReportPaymentOutcome",))
def report_payment_outcome(message: Message) -> None:
    """Answer with the payment's outcome (a saga compensating asks); never starts a charge.

    A round still running answers when it ends; it is run again (its claim keeps a live
    runner alone) in case a crash left it.
    """
    data = validated(ReportPaymentOutcomeInput, message)
    order_id = str(data["order_id"])
    payment, running = report_outcome(load_payment(order_id), command_id=message.message_id)
    if running:
        _charge_after_commit(order_id, payment)


def _charge_after_commit(order_id: str, payment: Payment) -> None:
    # The state just stored goes along: the charge runs after commit and needs no reload when
    # the stream is still at its version then (its claim checks). A copy: in a batch, a later
    # command about this payment changes the unit's object before the commit.
    charge = in_current_context(partial(run_charge, order_id=order_id, payment=snapshot(payment)))
    transaction.on_commit(partial(charge_pool.run, charge), robust=True)


@handles(CONTEXT, commands=("RefundPayment",))
def refund_payment(message: Message) -> None:
    """Record the refund request; refund after commit (or at once with 0.00 when nothing was captured)."""
    data = validated(RefundPaymentInput, message)
    order_id = str(data["order_id"])
    _, must_run = request_refund(
        order_id=order_id,
        amount=data.get("amount"),
        reason=data.get("reason") or "",
        command_id=message.message_id,
        strict=False,
    )
    if must_run:
        transaction.on_commit(in_current_context(partial(run_refunds, order_id=order_id)), robust=True)
