"""``manage.py backup_database [--output PATH]``: a pg_dump (custom format) of the database.

See ``config.backup`` and docs/operations.md "Backup and recovery". The default file is
``var/backups/<database>-<UTC time>.dump``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections
from django.utils import timezone

from config import backup


class Command(BaseCommand):
    help = "Back the PostgreSQL database up with pg_dump (custom format), one consistent snapshot."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", type=Path, default=None, help="the dump file to write")

    def handle(self, *args: Any, **options: Any) -> None:
        database = connections["default"].settings_dict
        if connections["default"].vendor != "postgresql":
            raise CommandError(
                "backup_database backs PostgreSQL up; the embedded mode's SQLite file is copied with "
                "`sqlite3 var/oms.sqlite3 '.backup var/oms-backup.sqlite3'`"
            )
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        path = (
            options["output"]
            or Path(settings.BASE_DIR) / "var" / "backups" / f"{database['NAME']}-{stamp}.dump"
        )
        try:
            objects = backup.dump(database, path)
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{path} ({path.stat().st_size} bytes, {objects} objects)")
