"""``manage.py rebuild_projections [--projection NAME]``: replay the event store into fresh
read models beside the live ones, then swap them in (see ``queries.replay``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from queries.projections import PROJECTIONS
from queries.replay import rebuild

BAR_WIDTH = 30


class Command(BaseCommand):
    help = "Rebuild the query side's read models from the event store while the API keeps serving."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--projection",
            choices=sorted(PROJECTIONS),
            action="append",
            help="Rebuild only this projection (repeatable); all of them by default.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        for name in options["projection"] or sorted(PROJECTIONS):
            rows = rebuild(name, progress=self._progress_bar(name))
            self.stderr.write("")
            self.stdout.write(f"{name}: rebuilt, {rows} rows")

    def _progress_bar(self, name: str) -> Any:
        def show(done: int, total: int) -> None:
            filled = BAR_WIDTH * done // total if total else BAR_WIDTH
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            self.stderr.write(f"\r{name} [{bar}] {done}/{total} events", ending="")
            self.stderr.flush()

        return show
