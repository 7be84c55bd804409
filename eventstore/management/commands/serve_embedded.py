"""``manage.py serve_embedded [addrport]``: the whole platform in one process (docs/architecture.md
"Run modes").

The embedded mode needs exactly one in-process dispatcher, so this command starts it (and
the periodic scheduler) itself and serves HTTP without Django's autoreloader, which would
run the code twice. Static files (Swagger UI, admin) are served by WhiteNoise with finders.

Everything it prints is a JSON log line (config/logging.py), ``runserver``'s banner included;
tracing is set up as in the stack's processes (no exporter: ids only), so the lines of one
order carry its trace id here too.
"""

from __future__ import annotations

import logging
import os
import signal
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.logging import LineLogger
from config.telemetry import setup_tracing
from eventstore.bus import start_dispatcher
from eventstore.scheduler import start_scheduler

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Serve the embedded mode: HTTP, the in-process bus and the periodic tasks in one process."

    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "addrport",
            nargs="?",
            default=f"127.0.0.1:{os.environ.get('PORT') or 8000}",
            help="host:port to listen on (default 127.0.0.1:$PORT, else 8000).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.EMBEDDED:
            raise CommandError(
                "serve_embedded runs only in the embedded mode: unset DATABASE_URL and BROKER_URL "
                "(use `make stack` for the stack mode)."
            )
        signal.signal(signal.SIGTERM, _interrupt)
        # Before the server builds its middleware chain (the Django instrumentation adds to it).
        setup_tracing(component="embedded", instrument_django=True)
        dispatcher = start_dispatcher()
        scheduler = start_scheduler()
        logger.info("in-process bus and scheduler started; serving on http://%s/", options["addrport"])
        try:
            call_command(
                "runserver",
                options["addrport"],
                use_reloader=False,
                use_threading=True,
                # Its banner and errors (its request lines go to "django.server": WEB_ACCESS_LOG).
                stdout=LineLogger(logger),
                stderr=LineLogger(logger, logging.ERROR),
            )
        finally:
            scheduler.stop()
            dispatcher.stop()
            dispatcher.join(timeout=10)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM ends the server the way Ctrl-C does, so the threads stop cleanly."""
    raise KeyboardInterrupt
