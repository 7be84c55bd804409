"""The Celery application: periodic safety nets and maintenance tasks (not the event wire).

On a single machine, where each process costs memory (deploy/run_stack.py), the worker hosts
other loops as threads: ``--with-beat-thread`` runs beat's scheduler (Celery's own ``-B`` forks
a process for it), and ``--with-relay`` the outbox relay (config/relay_step.py). Deployments
that scale the worker out run beat and the relay as processes of their own instead: beat must
run exactly once.
"""

import contextlib
import logging
import os
import sys
from functools import cache
from typing import Any

import celery.apps.worker
from celery import Celery, bootsteps
from celery.beat import EmbeddedService, PersistentScheduler
from celery.signals import beat_init, heartbeat_sent, setup_logging, worker_process_init, worker_ready
from click import Option

from config import heartbeat

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("oms")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Every beat touches HEARTBEAT_FILE when it is set (its probes); otherwise the stock scheduler.
app.conf.beat_scheduler = "config.celery_app:HeartbeatScheduler"


@worker_process_init.connect
def _trace_worker_process(**kwargs: object) -> None:
    # After fork, in each pool process: tracing (with the Celery instrumentation) of its own.
    from config.telemetry import setup_tracing

    setup_tracing(component="worker", instrument_celery=True)


@worker_ready.connect
def _trace_worker_threads(sender: Any = None, **kwargs: object) -> None:
    # A pool of threads (--pool=threads, the stack mode's) runs the tasks in this process, and
    # sends no worker_process_init: the tracing is set up here instead.
    from celery.concurrency.thread import TaskPool as ThreadPool

    if isinstance(getattr(sender, "pool", None), ThreadPool):
        from config.telemetry import setup_tracing

        setup_tracing(component="worker", instrument_celery=True)


@beat_init.connect
def _trace_beat(**kwargs: object) -> None:
    # Beat's sends (apply_async spans) start the trace of each periodic task it schedules. A
    # beat thread of the worker (--with-beat-thread) traces as the worker, which sets it up.
    if BeatThreadStep.running:
        return
    from config.telemetry import setup_tracing

    setup_tracing(component="beat", instrument_celery=True)


@worker_ready.connect
@beat_init.connect
def _settle_heap(**kwargs: object) -> None:
    # Start-up is done (tasks imported, tracing set up): config/heap.py.
    from config import heap

    heap.settle()


@worker_ready.connect
@heartbeat_sent.connect
def _worker_heartbeat(**kwargs: object) -> None:
    # The worker's own event heartbeat (every 2 s while it is connected to the broker) is the
    # sign of life its probes read (HEARTBEAT_FILE, config/heartbeat.py).
    heartbeat.beat()


@worker_ready.connect
def _serve_worker_metrics(**kwargs: object) -> None:
    # The pool processes write to PROMETHEUS_MULTIPROC_DIR; the main process serves their sum
    # on METRICS_PORT when one is set (a container of its own, config/metrics_server.py).
    from config.metrics_server import serve_metrics_if_configured

    serve_metrics_if_configured()


class BeatThreadStep(bootsteps.StartStopStep):
    """``--with-beat-thread``: beat's scheduler as a thread of the worker (its schedule file
    is the worker's ``--schedule-filename``)."""

    label = "BeatThread"
    conditional = True
    running = False  # this process's worker hosts beat

    def __init__(self, parent: Any, with_beat_thread: bool = False, **kwargs: Any) -> None:
        self.enabled = with_beat_thread
        super().__init__(parent, **kwargs)

    def create(self, parent: Any) -> Any:
        BeatThreadStep.running = True
        return EmbeddedService(
            parent.app,
            thread=True,
            schedule_filename=parent.schedule_filename,
            scheduler_cls=parent.scheduler,
        )


app.user_options["worker"].add(
    Option(["--with-beat-thread"], is_flag=True, default=False, help="Run beat's scheduler as a thread.")
)
app.steps["worker"].add(BeatThreadStep)


class HeartbeatScheduler(PersistentScheduler):
    """Celery beat's scheduler, touching HEARTBEAT_FILE on every tick (at least once a minute
    with the schedule of config/settings/base.py, at most once per heartbeat interval)."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        heartbeat.beat()
        return float(super().tick(*args, **kwargs))


@setup_logging.connect
def _log_as_the_project_does(**kwargs: Any) -> None:
    # A receiver here means Celery installs no handler of its own (no plain-text lines, no
    # hijacked root logger): the worker and beat log through the project's one configuration.
    from config.logging import configure, logging_config

    configure(logging_config())
    celery.apps.worker.safe_say = say_as_json_line


@cache
def _formatter() -> logging.Formatter:
    from config.logging import JsonFormatter

    return JsonFormatter()


def say_as_json_line(msg: str, f: Any = sys.__stderr__) -> None:
    """Celery's notes from its signal handlers ("worker: Warm shutdown (MainProcess)"), which it
    writes straight to a stream past any logging, as one JSON line of logger
    ``celery.apps.worker`` instead of a blank line and plain text.

    Written as Celery writes them, with one ``os.write`` and no handler lock: it runs inside a
    signal handler, which may have interrupted a log call of the same thread.
    """
    record = logging.LogRecord("celery.apps.worker", logging.INFO, __file__, 0, msg.strip(), None, None)
    # A note lost must never abort the shutdown (as in Celery's own).
    with contextlib.suppress(OSError, ValueError):
        os.write(f.fileno(), (_formatter().format(record) + "\n").encode())
