from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"
    verbose_name = "Orders"

    def ready(self) -> None:
        # Saving or deleting a user forgets its cached state (orders/sessions.py).
        from . import recorder, sessions  # noqa: F401

        # The recorder's implementation follows the database backend: chosen once, here.
        recorder.select()
