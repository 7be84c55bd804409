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
