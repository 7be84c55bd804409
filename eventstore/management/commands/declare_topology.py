"""``manage.py declare_topology``: declare the exchanges and every context's queues."""

from django.core.management.base import BaseCommand

from eventstore.registry import contexts
from eventstore.topology import broker_connection, declare_topology


class Command(BaseCommand):
    help = "Declare the RabbitMQ exchanges, work, retry and dead-letter queues (idempotent)."

    def handle(self, *args: object, **options: object) -> None:
        with broker_connection() as connection:
            queues = declare_topology(connection, context_names=contexts())
        self.stdout.write(f"declared {len(queues)} queues: {', '.join(queues)}")
