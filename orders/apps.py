from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    verbose_name = "Orders"

    def ready(self) -> None:
        # Saving or deleting a user forgets its cached state (orders/sessions.py).
        from payments.public import use_order_directory

        from . import sessions  # noqa: F401
        from .public import order_customer

        # The operator's charge of an order asks orders whether it exists and whose it is
        # (payments imports no other context: it is handed the lookup here).
        use_order_directory(order_customer)
