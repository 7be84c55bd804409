from importlib import import_module

from django.apps import AppConfig
from django.conf import settings
from django.utils.module_loading import autodiscover_modules


class EventstoreConfig(AppConfig):
    name = "eventstore"
    verbose_name = "Event store"

    def ready(self) -> None:
        # Each context registers its event types in its own events.py (eventstore.catalogue),
        # so every reader can upcast any stored event, whichever contexts it imported.
        autodiscover_modules("events")
        # Each context registers its message handlers in its own subscriptions.py.
        autodiscover_modules("subscriptions")
        # Test-only throwaway contexts, so consumer subprocesses load them too (test settings).
        for module in getattr(settings, "EXTRA_SUBSCRIPTION_MODULES", ()):
            import_module(module)
        # Registers the system check of the inbox retention.
        from . import retention  # noqa: F401
