"""The Celery application: periodic safety nets and maintenance tasks (not the event wire)."""

import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("oms")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _trace_worker_process(**kwargs: object) -> None:
    # After fork, in each pool process: tracing (with the Celery instrumentation) of its own.
    from config.telemetry import setup_tracing

    setup_tracing(component="worker", instrument_celery=True)


@setup_logging.connect
def _log_as_the_project_does(**kwargs: Any) -> None:
    # A receiver here means Celery installs no handler of its own (no plain-text lines, no
    # hijacked root logger): the worker and beat log through the project's one configuration.
    from config.logging import configure, logging_config

    configure(logging_config())
