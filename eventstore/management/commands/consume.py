"""``manage.py consume <context>… | --all [--exclude <context>…]``: run the RabbitMQ consumers until SIGTERM.

An app may run work in the background of a consumer process (payments runs charges on a pool
of threads): its ``AppConfig`` then defines ``consumer_started(contexts)``, called with the
contexts consumed before consuming starts, and ``consumer_stopped()``, called once consuming
stopped (the last batch is acked) to finish that work before the process exits.
"""

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from config import heap
from config.metrics_server import serve_metrics_if_configured
from config.telemetry import setup_tracing
from eventstore.consumer import QueueConsumer
from eventstore.registry import contexts

from ._signals import stop_on_signals


class Command(BaseCommand):
    help = "Consume the work queues of the given contexts (or --all) until SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("contexts", nargs="*", help="contexts whose queue to consume")
        parser.add_argument(
            "--all", action="store_true", help="every context with subscriptions that this service serves"
        )
        parser.add_argument(
            "--exclude", action="append", default=[], metavar="CONTEXT", help="with --all: not this context"
        )
        parser.add_argument("--prefetch", type=int, default=None)
        parser.add_argument("--batch-size", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        known = contexts()
        # --all: every context with subscriptions; in a split service (OMS_SERVICE), its own ones.
        served = (
            [context for context in known if context in settings.OMS_CONTEXTS] if settings.SPLIT else known
        )
        if options["exclude"] and not options["all"]:
            raise CommandError("--exclude goes with --all")
        chosen = [c for c in served if c not in options["exclude"]] if options["all"] else options["contexts"]
        if not chosen:
            raise CommandError("name at least one context, or pass --all")
        unknown = sorted(set(chosen + options["exclude"]) - set(known))
        if unknown:
            raise CommandError(f"no subscriptions for {', '.join(unknown)} (known: {', '.join(known)})")
        setup_tracing(component="consumer")
        serve_metrics_if_configured()  # METRICS_PORT: a container of its own (config/metrics_server.py)
        consumer = QueueConsumer(chosen, prefetch=options["prefetch"], batch_size=options["batch_size"])
        stopping = stop_on_signals()
        heap.settle()
        hooked = [app for app in apps.get_app_configs() if hasattr(app, "consumer_started")]
        for app in hooked:
            app.consumer_started(list(chosen))
        try:
            consumer.run(stopping)
        finally:
            for app in reversed(hooked):
                if hasattr(app, "consumer_stopped"):
                    app.consumer_stopped()
