"""``manage.py seed_demo``: the demo users and catalogue of README "Two commands", idempotent.

A second run changes nothing: users are compared field by field (the password is checked,
not re-hashed) and a product that already exists is left as it is (its stock may have moved).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from inventory import public as inventory_public
from orders.models import Role, User


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    customer_id: str | None


@dataclass(frozen=True)
class DemoProduct:
    product_id: str
    name: str
    price: Decimal
    available: int


@dataclass
class SeedCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


DEMO_USERS = (
    DemoUser(username="alice", role=Role.USER, customer_id="alice"),
    DemoUser(username="bob", role=Role.USER, customer_id="bob"),
    DemoUser(username="admin", role=Role.ADMIN, customer_id=None),
)

_CATALOGUE = (
    ("Wireless Mouse", "25.00", 200),
    ("Mechanical Keyboard", "89.90", 120),
    ("27-inch Monitor", "249.00", 40),
    ("USB-C Hub", "39.50", 150),
    ("Noise-Cancelling Headphones", "199.99", 60),
    ("Webcam 1080p", "54.00", 80),
    ("Laptop Stand", "32.00", 100),
    ("Desk Lamp", "27.75", 90),
    ("External SSD 1 TB", "119.00", 70),
    ("Ergonomic Chair", "329.00", 15),
    ("Standing Desk", "499.00", 10),
    ("HDMI Cable 2 m", "9.99", 500),
    ("Bluetooth Speaker", "64.90", 75),
    ("Wireless Charger", "22.50", 160),
    ("Graphics Tablet", "149.00", 25),
    ("Microphone", "99.00", 35),
    ("Mouse Pad XL", "14.90", 300),
    ("Laptop Backpack", "59.00", 85),
    ("Smart Plug", "17.25", 220),
    ("Gift Card", "50.00", 1000),
)

DEMO_PRODUCTS = tuple(
    DemoProduct(product_id=f"SKU-{number:04d}", name=name, price=Decimal(price), available=stock)
    for number, (name, price, stock) in enumerate(_CATALOGUE, start=1)
)


def seed_users(*, password: str) -> SeedCounts:
    """Create or correct the demo users; a user already as wanted is not written."""
    counts = SeedCounts()
    with transaction.atomic():
        for wanted in DEMO_USERS:
            _seed_user(wanted, password=password, counts=counts)
    return counts


def _seed_user(wanted: DemoUser, *, password: str, counts: SeedCounts) -> None:
    is_admin = wanted.role == Role.ADMIN
    fields: dict[str, Any] = {
        "role": wanted.role,
        "customer_id": wanted.customer_id,
        "is_active": True,
        # The operator also runs the Django admin (saga interventions, dead letters).
        "is_staff": is_admin,
        "is_superuser": is_admin,
    }
    user = User.objects.select_for_update().filter(username=wanted.username).first()
    if user is None:
        user = User(username=wanted.username, **fields)
        user.set_password(password)
        user.save()
        counts.created += 1
        return
    changed = [name for name, value in fields.items() if getattr(user, name) != value]
    for name in changed:
        setattr(user, name, fields[name])
    if not user.check_password(password):
        user.set_password(password)
        changed.append("password")
    if changed:
        user.save(update_fields=changed)
        counts.updated += 1
    else:
        counts.unchanged += 1


def seed_products() -> SeedCounts:
    """Create the demo products that do not exist yet, through the inventory context's public API.

    An existing product is left alone: re-seeding (``make run`` seeds on every start) must not
    reset stock that demo orders have since moved, nor undo an operator's price change.
    """
    counts = SeedCounts()
    existing = inventory_public.catalogue([product.product_id for product in DEMO_PRODUCTS])
    for product in DEMO_PRODUCTS:
        if product.product_id in existing:
            counts.unchanged += 1
            continue
        inventory_public.upsert_product(
            product_id=product.product_id, name=product.name, price=product.price, available=product.available
        )
        counts.created += 1
    return counts


def settings_module() -> str:
    """The dotted name of the settings in use."""
    return getattr(settings, "SETTINGS_MODULE", None) or os.environ.get("DJANGO_SETTINGS_MODULE", "")


class Command(BaseCommand):
    help = "Create the demo users (alice, bob, admin) and products SKU-0001…SKU-0020; safe to re-run."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="Run even with production settings.")
        parser.add_argument("--users-only", action="store_true", help="Seed the users, not the catalogue.")

    def handle(self, *args: Any, force: bool, users_only: bool, **options: Any) -> None:
        if settings_module().endswith("production") and not force:
            raise CommandError("Refusing to seed demo data with production settings (use --force).")
        users = seed_users(password=settings.DEMO_PASSWORD)
        self._report("users", users)
        if not users_only:
            self._report("products", seed_products())

    def _report(self, what: str, counts: SeedCounts) -> None:
        self.stdout.write(
            f"{what}: {counts.created} created, {counts.updated} updated, {counts.unchanged} unchanged"
        )
