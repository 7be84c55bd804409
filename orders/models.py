"""Models of the orders context: the user with its role and customer id."""

from typing import Any, ClassVar

from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models


class Role(models.TextChoices):
    USER = "USER"
    ADMIN = "ADMIN"


class OmsUserManager(UserManager["User"]):
    """``createsuperuser`` makes an operator (ADMIN) with no customer id."""

    def create_superuser(
        self, username: str, email: str | None = None, password: str | None = None, **extra: Any
    ) -> "User":
        extra.setdefault("role", Role.ADMIN)
        return super().create_superuser(username, email, password, **extra)


class User(AbstractUser):
    """A person who calls the API: a customer (USER) or an operator (ADMIN)."""

    role = models.CharField(max_length=8, choices=Role.choices, default=Role.USER)
    customer_id = models.CharField(max_length=64, null=True, blank=True, unique=True)

    objects: ClassVar[OmsUserManager] = OmsUserManager()


class IdempotencyRecord(models.Model):
    """One ``Idempotency-Key`` of one user: the request it stood for and the answer it got.

    The row is written in the transaction that places the order and commits with it, so the
    unique constraint leaves room for one order per key (orders/idempotency.py). ``state`` is
    always DONE for rows written that way. Kept 24 hours.
    """

    IN_PROGRESS = "IN_PROGRESS"
    DONE = "DONE"

    id = models.BigAutoField(primary_key=True)
    user_id = models.CharField(max_length=150)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    state = models.CharField(max_length=16, default=IN_PROGRESS)
    response_status = models.IntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "orders_idempotency_key"
        constraints = [
            models.UniqueConstraint(fields=["user_id", "key"], name="orders_idempotency_user_key_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.key} {self.state}"
