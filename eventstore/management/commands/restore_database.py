"""``manage.py restore_database DUMP --target-url postgres://…/NEW [--rebuild-projections]``.

Restores a dump made by ``backup_database`` into a new (or empty) database, never over the one
the platform uses, then optionally rebuilds the read models there from the restored event
store (``manage.py rebuild_projections`` run against the target). See ``config.backup`` and
docs/operations.md "Backup and recovery".
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import environ
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from config import backup


class Command(BaseCommand):
    help = "Restore a backup_database dump into a new database; optionally rebuild its read models."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dump", type=Path, help="a file written by backup_database")
        parser.add_argument(
            "--target-url", required=True, help="postgres://… of the database to create and restore into"
        )
        parser.add_argument(
            "--rebuild-projections",
            action="store_true",
            help="then rebuild the read models in the target from its event store",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        target_url = options["target_url"]
        target = environ.Env.db_url_config(target_url)
        if not str(target.get("ENGINE", "")).endswith("postgresql"):
            raise CommandError("--target-url must be a postgres:// URL")
        if _same_database(target, connections["default"].settings_dict):
            raise CommandError("the target is the database this platform uses: restore into a new one")
        try:
            created = backup.prepare_target(target)
            backup.restore(options["dump"], target)
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"restored {options['dump']} into {target['NAME']}{' (created)' if created else ''}"
        )
        if options["rebuild_projections"]:
            self._rebuild(target_url)

    def _rebuild(self, target_url: str) -> None:
        """``manage.py rebuild_projections`` with the target as the database."""
        result = subprocess.run(  # noqa: S603 - our own manage.py, no shell
            [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "rebuild_projections"],
            env={**os.environ, "DATABASE_URL": target_url},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise CommandError(f"rebuild_projections failed in the target: {result.stderr.strip()[-2000:]}")
        self.stdout.write(result.stdout.strip())


def _same_database(one: dict[str, Any], other: dict[str, Any]) -> bool:
    def where(database: dict[str, Any]) -> tuple[str, str, str]:
        host = str(database.get("HOST") or "localhost")
        host = "localhost" if host in ("127.0.0.1", "::1", "") else host
        return host, str(database.get("PORT") or 5432), str(database.get("NAME"))

    return where(one) == where(other)
