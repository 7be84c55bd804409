"""Models of the payments context: the read projection of payments and the simulator's ledger.

The event stream ``payment-<order_id>`` is the source of truth; :class:`PaymentRecord` is a
projection written in the same transaction as each event, for reads and for the periodic
resumption of stalled payments. :class:`PaymentSecret` holds the card token of a charge round
that may still call the gateway, apart from the append-only log, so that it can be deleted.
The two ``Gateway*`` tables stand for the external payment
system: only :mod:`payments.simulator` writes them, on its own connection.
"""

from django.db import models


class PaymentRecord(models.Model):
    """The current state of one order's payment (projection of its stream)."""

    order_id = models.CharField(max_length=64, primary_key=True)
    payment_id = models.CharField(max_length=64, unique=True)
    # Whose payment it is (from the saga's ProcessPayment): "" when not known.
    customer_id = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=32, blank=True, default="", db_index=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    refunded_amount = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    attempts = models.IntegerField(default=0)
    captures = models.IntegerField(default=0)
    pending_refunds = models.IntegerField(default=0)
    version = models.IntegerField(default=0)
    claimed_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        db_table = "payments_payment"

    def __str__(self) -> str:
        return f"payment of {self.order_id}: {self.status or 'not requested'}"


class PaymentSecret(models.Model):
    """The card token of an order's current charge round, while a charge call may still use it.

    Written in the transaction that records ``PaymentRequested`` (which names it only by its
    opaque ``reference``), read by the charge runner (a retry after a crash included), deleted
    in the transaction that ends the round (``PaymentProcessed``/``PaymentFailed``); the resume
    task sweeps up any a crash left behind. Never shown by any API, the admin or the console.
    """

    order_id = models.CharField(max_length=64, primary_key=True)
    reference = models.CharField(max_length=64)
    token = models.CharField(max_length=128)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "payment_secret"

    def __str__(self) -> str:
        return f"card token of {self.order_id} ({self.reference})"


class GatewayCharge(models.Model):
    """The simulated gateway's ledger: one charge per idempotency key (never two captures)."""

    idempotency_key = models.CharField(max_length=128, unique=True)
    token = models.CharField(max_length=64)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    status = models.CharField(max_length=16)  # NEW, CAPTURED, DECLINED, FAILED
    charge_calls = models.IntegerField(default=0)
    refunded_amount = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "payments_gateway_charge"

    def __str__(self) -> str:
        return f"{self.idempotency_key}: {self.status}"


class GatewayRefund(models.Model):
    """One refund in the simulated gateway's ledger, keyed so a retried refund is not paid twice."""

    refund_key = models.CharField(max_length=128, unique=True)
    idempotency_key = models.CharField(max_length=128, db_index=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "payments_gateway_refund"

    def __str__(self) -> str:
        return f"{self.refund_key}: {self.amount}"
