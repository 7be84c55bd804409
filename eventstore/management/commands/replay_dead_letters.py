"""``manage.py replay_dead_letters [--id N] [--context C]``: send dead letters again."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from eventstore.deadletters import replay_dead_letter
from eventstore.models import DeadLetter


class Command(BaseCommand):
    help = "Replay unreplayed dead letters through the outbox (same message id and body)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--id", type=int, default=None, help="one dead letter")
        parser.add_argument("--context", default=None, help="only this consumer's dead letters")
        parser.add_argument("--by", default="manage.py", help="who replays (recorded)")

    def handle(self, *args: Any, **options: Any) -> None:
        pending = DeadLetter.objects.filter(replayed_at__isnull=True).order_by("id")
        if options["id"] is not None:
            pending = pending.filter(id=options["id"])
            if not pending.exists():
                raise CommandError(f"no unreplayed dead letter with id {options['id']}")
        if options["context"]:
            pending = pending.filter(consumer=options["context"])
        replayed = 0
        for dead_letter_id in pending.values_list("id", flat=True):
            replay_dead_letter(dead_letter_id, by=options["by"])
            replayed += 1
        self.stdout.write(f"replayed {replayed} dead letters")
