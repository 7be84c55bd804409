"""The card token of a charge round (issue 14): held apart from the event log, deleted once settled.

``PaymentRequested`` names the token by an opaque reference; the token itself lives in
``payment_secret`` while a charge call may still use it — a retry after a crash included — and
is deleted in the transaction that ends the round, or by the resume task's sweep when that was
missed. Real PostgreSQL, the simulator's ledger, the breaker on Redis.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone

from eventstore.store import load_stream
from payments.charging import resume_stalled_payments, run_charge
from payments.gateway import ChargeResult
from payments.handlers import request_payment
from payments.models import PaymentRecord, PaymentSecret
from payments.recorder import sweep_secrets
from payments.simulator import SimulatedGateway

from .conftest import ledger_entry

pytestmark = pytest.mark.django_db(transaction=True)


def _token() -> str:
    """A card token no other row can contain by chance (the simulator captures any unknown one)."""
    return f"tok_card_{uuid.uuid4().hex}"


def _events_containing(text: str) -> list[str]:
    """The event_store rows whose text (every column, the JSON data included) contains ``text``."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT e.event_type FROM event_store e WHERE CAST(e AS text) LIKE %s", [f"%{text}%"])
        return [row[0] for row in cursor.fetchall()]


def _requested_reference(order_id: str) -> str:
    requested = [e for e in load_stream(f"payment-{order_id}") if e.type == "PaymentRequested"]
    return str(requested[-1].data["reference"])


class _DiesMidCharge:
    """A gateway whose runner process dies during the call (an error no retry handles).

    ``after_ledger``: the call reached the ledger (and captured) before the process died.
    """

    name = "simulator"

    def __init__(self, *, after_ledger: bool) -> None:
        self.after_ledger = after_ledger
        self.real = SimulatedGateway()

    def charge(self, *, idempotency_key: str, amount: Decimal, token: str) -> ChargeResult:
        if self.after_ledger:
            self.real.charge(idempotency_key=idempotency_key, amount=amount, token=token)
        raise SystemError("the charge runner's process died")

    def status(self, *, idempotency_key: str):  # pragma: no cover - never reached
        return self.real.status(idempotency_key=idempotency_key)


def test_the_token_is_held_apart_while_the_charge_may_run_and_deleted_with_the_capture(requested):
    token = _token()
    order_id = requested(token)

    secret = PaymentSecret.objects.get(pk=order_id)
    assert (secret.token, secret.reference) == (token, _requested_reference(order_id))
    assert secret.reference.startswith("pmref_") and token not in secret.reference
    assert _events_containing(token) == []

    assert run_charge(order_id=order_id).status == "CAPTURED"
    assert ledger_entry(order_id).token == token  # the gateway was called with the held token
    assert not PaymentSecret.objects.filter(pk=order_id).exists()
    assert _events_containing(token) == []


def test_a_declined_round_deletes_its_token_and_a_new_round_holds_a_new_one(requested):
    order_id = requested("tok_declined")
    first = _requested_reference(order_id)
    assert run_charge(order_id=order_id).status == "DECLINED"
    assert not PaymentSecret.objects.filter(pk=order_id).exists()

    # an operator tries again with another card: a new round, a new reference, a new secret
    token = _token()
    requested(token, order_id=order_id)  # not strict: a settled payment is only reported
    assert not PaymentSecret.objects.filter(pk=order_id).exists()
    with transaction.atomic():
        request_payment(
            order_id=order_id,
            amount=Decimal("25.00"),
            method="card",
            token=token,
            customer_id="",
            command_id="",
            strict=True,
        )
    second = PaymentSecret.objects.get(pk=order_id)
    assert second.token == token and second.reference == _requested_reference(order_id) != first
    assert run_charge(order_id=order_id).status == "CAPTURED"
    assert not PaymentSecret.objects.filter(pk=order_id).exists()
    assert _events_containing(token) == [] and _events_containing("tok_declined") == []


@pytest.mark.parametrize("after_ledger", [False, True], ids=["before-the-call", "after-the-capture"])
def test_a_charge_retried_after_a_crash_still_finds_its_token(requested, after_ledger):
    token = _token()
    order_id = requested(token)
    with pytest.raises(SystemError):
        run_charge(order_id=order_id, gateway=_DiesMidCharge(after_ledger=after_ledger))
    # the process died holding the claim: its lease runs out
    PaymentRecord.objects.filter(pk=order_id).update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert PaymentRecord.objects.get(pk=order_id).status == "PENDING"
    assert PaymentSecret.objects.get(pk=order_id).token == token

    assert order_id in resume_stalled_payments(older_than=0)

    assert PaymentRecord.objects.get(pk=order_id).status == "CAPTURED"
    entry = ledger_entry(order_id)
    assert (entry.status, entry.token, entry.charge_calls) == ("CAPTURED", token, 2 if after_ledger else 1)
    assert not PaymentSecret.objects.filter(pk=order_id).exists()


def test_a_round_whose_token_is_gone_makes_no_call_and_fails(requested):
    order_id = requested(_token())
    PaymentSecret.objects.filter(pk=order_id).delete()
    payment = run_charge(order_id=order_id)
    assert payment.status == "FAILED"
    assert ledger_entry(order_id) is None  # the gateway never saw a call


def test_the_sweep_deletes_only_the_tokens_of_payments_no_longer_running(requested):
    running = requested(_token())
    settled = requested(_token())
    assert run_charge(order_id=settled).status == "CAPTURED"
    long_ago = timezone.now() - timedelta(hours=1)
    # a token the end of its round did not delete (a crash between), one of a payment row that is
    # gone, and one just written for a settled payment (a new round may have begun meanwhile)
    PaymentSecret.objects.create(order_id=settled, reference="pmref_x", token=_token(), created_at=long_ago)
    orphan = str(uuid.uuid4())
    PaymentSecret.objects.create(order_id=orphan, reference="pmref_y", token=_token(), created_at=long_ago)
    PaymentSecret.objects.filter(pk=running).update(created_at=long_ago)
    fresh = requested("tok_declined")
    assert run_charge(order_id=fresh).status == "DECLINED"
    just_now = timezone.now()
    PaymentSecret.objects.create(order_id=fresh, reference="pmref_z", token=_token(), created_at=just_now)

    assert sweep_secrets() == 2
    assert set(PaymentSecret.objects.values_list("order_id", flat=True)) == {running, fresh}
    assert sweep_secrets(now=timezone.now() + timedelta(minutes=5)) == 1  # past the grace
    assert list(PaymentSecret.objects.values_list("order_id", flat=True)) == [running]


def test_the_resume_task_sweeps_too(requested):
    order_id = requested(_token())
    assert run_charge(order_id=order_id).status == "CAPTURED"
    PaymentSecret.objects.create(
        order_id=order_id, reference="pmref_x", token=_token(), created_at=timezone.now() - timedelta(hours=1)
    )
    resume_stalled_payments(older_than=0)
    assert not PaymentSecret.objects.filter(pk=order_id).exists()


def test_a_payment_requested_before_the_upgrade_still_charges_with_the_token_its_event_carried():
    """The log is not rewritten: the migration copies a running payment's token out of its
    old-shape event into ``payment_secret`` (reference ""), and the charge runs with it."""
    import importlib
    from types import SimpleNamespace

    from django.apps import apps

    from eventstore.store import append
    from payments.domain import idempotency_key_for, payment_id_for
    from payments.handlers import load_payment
    from payments.recorder import project
    from tests.fixtures.events import untyped_event

    migration = importlib.import_module("payments.migrations.0002_payment_secret_and_owner")
    token, order_id = _token(), str(uuid.uuid4())
    old_shape = {
        "order_id": order_id,
        "payment_id": payment_id_for(order_id),
        "amount": "25.00",
        "method": "card",
        "token": token,
        "idempotency_key": idempotency_key_for(order_id),
        "command_id": str(uuid.uuid4()),
    }
    with transaction.atomic():
        # Stored as the handler stored it then (the catalogue's PaymentRequested has no token).
        append(
            context="payments",
            aggregate_type="payment",
            aggregate_id=f"payment-{order_id}",
            expected_version=0,
            events=[untyped_event("PaymentRequested", old_shape)],
            correlation_id=order_id,
        )
        project(load_payment(order_id), first=True, release_claim=False)
    assert not PaymentSecret.objects.filter(pk=order_id).exists()

    migration.hold_tokens_of_running_payments(apps, SimpleNamespace(connection=connection))
    migration.hold_tokens_of_running_payments(apps, SimpleNamespace(connection=connection))  # idempotent

    assert (PaymentSecret.objects.get(pk=order_id).reference, PaymentSecret.objects.count()) == ("", 1)
    assert run_charge(order_id=order_id).status == "CAPTURED"
    assert ledger_entry(order_id).token == token
    assert not PaymentSecret.objects.filter(pk=order_id).exists()
    assert _events_containing(token) == ["PaymentRequested"]  # history as it was written
