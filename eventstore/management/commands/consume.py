"""``manage.py consume <context>… | --all``: run the RabbitMQ consumers until SIGTERM."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.telemetry import setup_tracing
from eventstore.consumer import QueueConsumer
from eventstore.registry import contexts

from ._signals import stop_on_signals


class Command(BaseCommand):
    help = "Consume the work queues of the given contexts (or --all) until SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("contexts", nargs="*", help="contexts whose queue to consume")
        parser.add_argument("--all", action="store_true", help="every context that has subscriptions")
        parser.add_argument("--prefetch", type=int, default=None)
        parser.add_argument("--batch-size", type=int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        known = contexts()
        chosen = known if options["all"] else options["contexts"]
        if not chosen:
            raise CommandError("name at least one context, or pass --all")
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            raise CommandError(f"no subscriptions for {', '.join(unknown)} (known: {', '.join(known)})")
        setup_tracing(component="consumer")
        consumer = QueueConsumer(chosen, prefetch=options["prefetch"], batch_size=options["batch_size"])
        consumer.run(stop_on_signals())
