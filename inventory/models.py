"""Models of the inventory context: the lockable current state of stock and reservations.

Every change to these rows is also an event in the event store, written in the same
transaction (the events are the audit log and what the saga hears; the rows are what
``SELECT … FOR UPDATE`` locks).
"""

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q

from .domain import PRODUCT_ID_PATTERN, ReservationState

# Validators for the admin's forms; the API and the commands validate with their serializers.
_product_id_validator = RegexValidator(
    rf"\A{PRODUCT_ID_PATTERN.pattern}\Z", "Must match [A-Za-z0-9._-]{1,64}."
)


class Product(models.Model):
    """One product's stock: ``available + reserved + sold = received`` (a CHECK constraint)."""

    product_id = models.CharField(max_length=64, primary_key=True, validators=[_product_id_validator])
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=10, decimal_places=2, validators=[MinValueValidator(0)])
    available = models.IntegerField(default=0, validators=[MinValueValidator(0)])
    reserved = models.IntegerField(default=0)
    sold = models.IntegerField(default=0)
    received = models.IntegerField(default=0)
    version = models.IntegerField(default=0, help_text="Version of the product-<id> stream.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["product_id"]
        constraints = [
            models.CheckConstraint(condition=Q(available__gte=0), name="inventory_available_gte_0"),
            models.CheckConstraint(condition=Q(reserved__gte=0), name="inventory_reserved_gte_0"),
            models.CheckConstraint(condition=Q(sold__gte=0), name="inventory_sold_gte_0"),
            models.CheckConstraint(condition=Q(price__gte=0), name="inventory_price_gte_0"),
            models.CheckConstraint(
                condition=Q(received=F("available") + F("reserved") + F("sold")),
                name="inventory_buckets_sum_to_received",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.product_id} ({self.available} available)"


class Reservation(models.Model):
    """The stock held for one order (its stream is ``reservation-<order_id>``)."""

    order_id = models.UUIDField(primary_key=True)
    items = models.JSONField(default=list)
    state = models.CharField(max_length=16, choices=[(s.value, s.value) for s in ReservationState])
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["expires_at"],
                name="inventory_held_expiry_idx",
                condition=Q(state=ReservationState.HELD.value),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.order_id} {self.state}"
