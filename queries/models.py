"""Read models of the query side (CQRS), projected from the event store.

Every read-model row carries the ``generation`` of the projection run that wrote it. The live
API reads the active generation (``ProjectionState``); ``rebuild_projections`` writes the next
generation aside and flips the active one in a single transaction, so readers never see a
half-built model. ``order_id`` is unique per generation (the seed's primary key, per build).
"""

from django.db import models


class ProjectionState(models.Model):
    """One projection's active generation and catch-up checkpoint (an ``eventstore.reader.Position``)."""

    name = models.CharField(max_length=64, primary_key=True)
    generation = models.IntegerField(default=1)
    position = models.CharField(max_length=64, blank=True, default="")
    caught_up_at = models.DateTimeField(null=True, blank=True)
    rebuilt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "queries_projection_state"

    def __str__(self) -> str:
        return f"{self.name} g{self.generation} @{self.position or 'start'}"


class OrderReadModel(models.Model):
    """One order as the list, customer and search endpoints show it."""

    id = models.BigAutoField(primary_key=True)
    generation = models.IntegerField(default=1)
    order_id = models.UUIDField()
    customer_id = models.CharField(max_length=255)
    status = models.CharField(max_length=32)
    total_amount = models.DecimalField(max_digits=14, decimal_places=2)
    failure_reason = models.CharField(  # noqa: DJ001 - null is the contract's "no failure"
        max_length=32, null=True, blank=True
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    version = models.IntegerField()
    # Product names, order id and customer id; on PostgreSQL a generated tsvector column with
    # a GIN index is derived from it (migration 0002), elsewhere it is searched with icontains.
    search_text = models.TextField(blank=True, default="")

    class Meta:
        db_table = "order_read_model"
        constraints = [
            models.UniqueConstraint(
                fields=["generation", "order_id"], name="order_read_model_gen_order_uniq"
            ),
        ]
        indexes = [
            models.Index(fields=["generation", "customer_id", "created_at"], name="orm_gen_customer_created"),
            models.Index(fields=["generation", "created_at"], name="orm_gen_created"),
            models.Index(fields=["generation", "status", "created_at"], name="orm_gen_status_created"),
            models.Index(fields=["generation", "total_amount"], name="orm_gen_total"),
        ]

    def __str__(self) -> str:
        return f"{self.order_id} {self.status} (g{self.generation})"


class OrderItemReadModel(models.Model):
    """One line of an order (for the product filter, top products and search)."""

    id = models.BigAutoField(primary_key=True)
    order = models.ForeignKey(OrderReadModel, on_delete=models.CASCADE, related_name="items")
    product_id = models.CharField(max_length=64)
    product_name = models.CharField(max_length=255)
    quantity = models.IntegerField()
    price = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        db_table = "order_item_read_model"
        indexes = [models.Index(fields=["product_id"], name="oirm_product")]

    def __str__(self) -> str:
        return f"{self.product_id} x{self.quantity}"


class PaymentReadModel(models.Model):
    """The payment outcome of one order (CAPTURED or FAILED), for the payment success rate."""

    CAPTURED = "CAPTURED"
    FAILED = "FAILED"

    id = models.BigAutoField(primary_key=True)
    generation = models.IntegerField(default=1)
    order_id = models.UUIDField()
    outcome = models.CharField(max_length=16)
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "payment_read_model"
        constraints = [
            models.UniqueConstraint(
                fields=["generation", "order_id"], name="payment_read_model_gen_order_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.order_id} {self.outcome} (g{self.generation})"


class AnalyticsRefresh(models.Model):
    """When the analytics materialized views were last refreshed (the response's ``as_of``)."""

    name = models.CharField(max_length=64, primary_key=True)
    refreshed_at = models.DateTimeField()

    class Meta:
        db_table = "queries_analytics_refresh"

    def __str__(self) -> str:
        return f"{self.name} {self.refreshed_at}"


class Order(OrderReadModel):
    """The Django admin's "Orders" entry: the orders of the live generation (a proxy, no table)."""

    class Meta:
        proxy = True
        verbose_name = "order"
        verbose_name_plural = "orders"
