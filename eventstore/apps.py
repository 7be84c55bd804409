from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class EventstoreConfig(AppConfig):
    name = "eventstore"
    verbose_name = "Event store"

    def ready(self) -> None:
        # Each context registers its message handlers in its own subscriptions.py.
        autodiscover_modules("subscriptions")
