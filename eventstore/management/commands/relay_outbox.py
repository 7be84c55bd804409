"""``manage.py relay_outbox``: move outbox rows to RabbitMQ until SIGTERM/SIGINT."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from config import heap
from config.metrics_server import serve_metrics_if_configured
from config.telemetry import setup_tracing
from eventstore.publisher import ConfirmingPublisher
from eventstore.relay import declare_relay_topology, relay_until_idle, run_relay
from eventstore.topology import broker_connection

from ._signals import stop_on_signals


class Command(BaseCommand):
    help = "Publish pending outbox rows to RabbitMQ (loops until SIGTERM unless --once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="relay what is pending, then exit")
        parser.add_argument("--batch-size", type=int, default=None, help="rows per claim")

    def handle(self, *args: Any, **options: Any) -> None:
        setup_tracing(component="relay")
        serve_metrics_if_configured()  # METRICS_PORT: a container of its own (config/metrics_server.py)
        declare_relay_topology()
        if options["once"]:
            publisher = ConfirmingPublisher(broker_connection())
            try:
                published = relay_until_idle(publisher, batch_size=options["batch_size"])
            finally:
                publisher.close()
            self.stdout.write(f"published {published} messages")
            return
        heap.settle()
        run_relay(stop_on_signals(), batch_size=options["batch_size"])
