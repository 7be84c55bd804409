"""``manage.py audit_money``: the proof that money and stock are right.

Prints one line per discrepancy (kind, order / product / dead letter, expected, found) and a
summary line; ``--json`` prints one JSON document instead. Exit status: 0 when nothing is wrong,
1 when anything is, 2 when the audit could not run (a bad option, the database did not answer).
See :mod:`config.audit.money` for what each kind means.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from config.audit.money import DEFAULT_GRACE_SECONDS, run_audit

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str) -> datetime:
    """An ISO 8601 moment (UTC when it names no zone) or a duration back from now: 90s, 15m, 2h, 1d."""
    duration = _DURATION.fullmatch(value.strip())
    if duration:
        return timezone.now() - timedelta(seconds=float(duration[1]) * _UNITS[duration[2]])
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise CommandError(
            f"--since {value!r}: an ISO 8601 date-time or a duration like 15m, 2h", returncode=2
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Audit money (gateway ledger against orders and payments), stock (buckets against events "
        "and reservations), order progress and dead letters. Exit 0 clean, 1 discrepancies, 2 error."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print one JSON document instead of lines.")
        parser.add_argument(
            "--since",
            type=str,
            default=None,
            help="Only orders placed (and dead letters recorded) from then on: ISO 8601 or 90s/15m/2h/1d. "
            "Stock is always audited whole.",
        )
        parser.add_argument(
            "--grace",
            type=float,
            default=DEFAULT_GRACE_SECONDS,
            help=f"Seconds past its saga's deadline before an order counts as stalled "
            f"(default {DEFAULT_GRACE_SECONDS:g}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        since = parse_since(options["since"]) if options["since"] else None
        try:
            report = run_audit(since=since, grace_seconds=options["grace"])
        except Exception as exc:  # status 1 must mean "discrepancies", never a crash
            raise CommandError(f"the audit could not run: {type(exc).__name__}: {exc}", returncode=2) from exc
        if options["json"]:
            self.stdout.write(json.dumps(report.as_json(), indent=2))
        else:
            for item in report.discrepancies:
                self.stdout.write(item.line())
            self.stdout.write(report.summary())
        self.stdout.flush()
        if not report.ok:
            sys.exit(1)
