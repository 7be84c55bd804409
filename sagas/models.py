"""Models of the sagas context: one row per order saga, its transitions and its step attempts.

The saga's events also go to the event store (stream ``saga-<order_id>``); these rows are the
lockable current state and the audit trail the admin shows.
"""

from django.db import models
from django.utils import timezone


class SagaInstance(models.Model):
    """The current state of one order's saga (mirrors ``sagas.domain.Saga``)."""

    order_id = models.CharField(max_length=36, primary_key=True)
    customer_id = models.CharField(max_length=64)
    state = models.CharField(max_length=24, db_index=True)
    step = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001 - null is "no step", as the API shows it
    attempts = models.IntegerField(default=1)
    deadline = models.DateTimeField(db_index=True)
    needs_attention = models.BooleanField(default=False, db_index=True)
    failure_reason = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001 - null is "no failure"
    outcome = models.CharField(max_length=16, null=True, blank=True)  # noqa: DJ001 - null is "not decided"
    cancelled_by = models.CharField(max_length=150, blank=True, default="")
    cancel_reason = models.CharField(max_length=500, blank=True, default="")
    order_status = models.CharField(max_length=24, default="PENDING")
    items = models.JSONField()
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    payment_method = models.CharField(max_length=32)
    payment_token = models.CharField(max_length=128)
    reserved = models.BooleanField(default=False)
    reservation_expires_at = models.DateTimeField(null=True, blank=True)
    payment_requested = models.BooleanField(default=False)
    captured = models.BooleanField(default=False)
    confirmed = models.BooleanField(default=False)
    pending = models.JSONField(default=list, blank=True)
    # The last moment the saga may run forward; ``deadline`` is the next moment the sweep acts.
    expires_at = models.DateTimeField(null=True, blank=True)
    # {step: [command ids]}: the commands whose answers a step still waits for.
    commands = models.JSONField(default=dict, blank=True)
    refunded = models.BooleanField(default=False)
    version = models.IntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "saga_instance"
        indexes = [
            models.Index(
                fields=["deadline"],
                name="idx_saga_open_deadline",
                condition=~models.Q(state__in=["COMPLETED", "COMPENSATED", "FAILED"]),
            ),
        ]

    def __str__(self) -> str:
        return f"saga {self.order_id} {self.state}"


class SagaTransition(models.Model):
    """One change of state or step, with why it happened."""

    id = models.BigAutoField(primary_key=True)
    saga = models.ForeignKey(SagaInstance, on_delete=models.CASCADE, related_name="transitions")
    at = models.DateTimeField(default=timezone.now)
    from_state = models.CharField(max_length=24)
    to_state = models.CharField(max_length=24)
    step = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001 - null is "no step", as the API shows it
    reason = models.CharField(max_length=500, blank=True, default="")
    cause_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        db_table = "saga_transition"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.from_state} -> {self.to_state}"


class SagaStepAttempt(models.Model):
    """One command the saga sent for a step, and what came of it."""

    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    OUTCOMES = [(value, value) for value in (PENDING, SUCCEEDED, FAILED, TIMED_OUT)]

    id = models.BigAutoField(primary_key=True)
    saga = models.ForeignKey(SagaInstance, on_delete=models.CASCADE, related_name="step_attempts")
    step = models.CharField(max_length=32)
    command = models.CharField(max_length=64)
    attempt = models.IntegerField()
    message_id = models.CharField(max_length=36)
    sent_at = models.DateTimeField(default=timezone.now)
    outcome = models.CharField(max_length=16, choices=OUTCOMES, default=PENDING)
    answered_at = models.DateTimeField(null=True, blank=True)
    answer = models.CharField(max_length=64, blank=True, default="")
    error = models.TextField(blank=True, default="")

    class Meta:
        db_table = "saga_step_attempt"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.step} #{self.attempt} {self.outcome}"
