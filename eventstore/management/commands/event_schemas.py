"""``manage.py event_schemas [--write]``: compare the event catalogue with its snapshot, or add to it.

The snapshot (``eventstore/event_schemas.json``) keeps the fields and types of every version of
every event type. Without ``--write`` the command checks the registered events against it and
exits non-zero on any difference (what ``tests/eventstore/test_catalogue.py`` checks too). With
``--write`` it adds the current version of every event — a new event type, or a new
``schema_version`` added deliberately with its upcaster — and refuses to rewrite a version that
is already there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from eventstore import catalogue

SNAPSHOT = Path(__file__).resolve().parents[2] / "event_schemas.json"


def read_snapshot(path: Path = SNAPSHOT) -> catalogue.Snapshot:
    """The snapshot as stored (empty when there is none yet)."""
    if not path.exists():
        return {}
    loaded: catalogue.Snapshot = json.loads(path.read_text())
    return loaded


class Command(BaseCommand):
    help = "Check the event schemas against eventstore/event_schemas.json, or add new versions (--write)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--write", action="store_true", help="add the current version of every event to the snapshot"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        snapshot = read_snapshot()
        if options["write"]:
            try:
                merged = catalogue.merged_snapshot(snapshot)
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
            SNAPSHOT.write_text(json.dumps(merged, indent=2) + "\n")
            self.stdout.write(f"{SNAPSHOT.name}: {sum(len(v) for v in merged.values())} event schemas")
            return
        problems = catalogue.schema_problems(snapshot)
        if problems:
            raise CommandError("\n".join(problems))
        self.stdout.write(f"{len(catalogue.registered())} event types match {SNAPSHOT.name}")
