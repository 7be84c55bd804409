"""The Celery application: periodic safety nets and maintenance tasks (not the event wire)."""

import os

from celery import Celery
from celery.signals import beat_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("oms")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _trace_worker_process(**kwargs: object) -> None:
    # After fork, in each pool process: tracing (with the Celery instrumentation) of its own.
    from config.telemetry import setup_tracing

    setup_tracing(component="worker", instrument_celery=True)


@beat_init.connect
def _trace_beat(**kwargs: object) -> None:
    # Beat's sends (apply_async spans) start the trace of each periodic task it schedules.
    from config.telemetry import setup_tracing

    setup_tracing(component="beat", instrument_celery=True)
