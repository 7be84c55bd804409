from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    verbose_name = "Orders"

    def ready(self) -> None:
        # Saving or deleting a user forgets its cached state (orders/sessions.py).
        from . import sessions  # noqa: F401
