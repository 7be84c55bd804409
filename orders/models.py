"""Models of the orders context: the user with its role and customer id."""

from typing import Any

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

    objects = OmsUserManager()
