"""Wire the contexts together once every app is loaded (``INSTALLED_APPS``: listed last).

The contexts import each other only one way (orders → sagas, never back); where the lower one
must call the higher one, it declares an interface and this app fills it. Every process that
runs context code starts Django first (web, consumers, the relay, Celery, tests), so the
wiring is in place before the first message or request.
"""

from django.apps import AppConfig


class CompositionConfig(AppConfig):
    name = "config.composition"
    label = "composition"
    verbose_name = "Composition root"

    def ready(self) -> None:
        from orders import public as orders_public
        from sagas import public as sagas_public

        # The saga changes its order in its own transaction: through orders' public interface.
        sagas_public.connect_orders(orders_public)
        connect_services()


def connect_services() -> None:
    """In a split service, the reads of another service's context go to that service over HTTP
    (config/composition/remote.py); with every context here (``OMS_SERVICE=all``) nothing changes."""
    from django.conf import settings

    if not settings.SPLIT:
        return
    from orders import neighbours
    from orders import public as orders_public
    from payments import public as payments_public

    from .remote import (
        RemoteCatalogue,
        RemoteOrderDirectory,
        RemotePaymentHistory,
        RemoteService,
        RemoteUserState,
    )

    served = set(settings.OMS_CONTEXTS)
    if "orders" in served:
        if "inventory" not in served:
            neighbours.use(
                catalogue=RemoteCatalogue(RemoteService("inventory", settings.INVENTORY_SERVICE_URL))
            )
        if "payments" not in served:
            neighbours.use(
                payment_history=RemotePaymentHistory(RemoteService("payments", settings.PAYMENTS_SERVICE_URL))
            )
    if "orders" not in served:
        # Token checks read the user's state (active, role, customer id) from the users' owner.
        orders_public.use_user_state_reader(
            RemoteUserState(RemoteService("orders", settings.ORDERS_SERVICE_URL))
        )
    if "payments" in served and "orders" not in served:
        payments_public.use_order_directory(
            RemoteOrderDirectory(RemoteService("orders", settings.ORDERS_SERVICE_URL))
        )
