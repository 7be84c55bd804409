"""The embedded mode's periodic runner: Celery beat's schedule, run in-process.

In the stack mode ``celery beat`` sends ``settings.CELERY_BEAT_SCHEDULE`` to the workers. The
embedded mode has no broker, so one thread of the server process calls the same task
functions directly, each when its schedule says it is due. Tasks listed in
``settings.EMBEDDED_SCHEDULE_EXCLUDE`` are skipped (the relay: the in-process bus does its job).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from celery.schedules import BaseSchedule, maybe_schedule
from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)

# Upper bound on one sleep, so a stop request is honoured promptly.
MAX_SLEEP_SECONDS = 5.0


@dataclass
class ScheduledTask:
    """One beat entry: which task, with which arguments, on which schedule."""

    name: str
    task: str
    schedule: BaseSchedule
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    last_run_at: datetime | None = None

    def seconds_until_due(self) -> float:
        """0 when the task is due now, else the seconds until it is."""
        if self.last_run_at is None:
            self.last_run_at = self.schedule.now()
        state = self.schedule.is_due(self.last_run_at)
        return 0.0 if state.is_due else float(state.next)


def scheduled_tasks(*, app: Any) -> list[ScheduledTask]:
    """The beat schedule of the settings as entries, without the excluded tasks."""
    excluded = set(getattr(settings, "EMBEDDED_SCHEDULE_EXCLUDE", ()))
    schedule: dict[str, dict[str, Any]] = settings.CELERY_BEAT_SCHEDULE
    entries = []
    for name, entry in schedule.items():
        if entry["task"] in excluded:
            continue
        entries.append(
            ScheduledTask(
                name=name,
                task=entry["task"],
                schedule=maybe_schedule(entry["schedule"], app=app),
                args=tuple(entry.get("args", ())),
                kwargs=dict(entry.get("kwargs", {})),
            )
        )
    return entries


def run_task(*, app: Any, entry: ScheduledTask) -> bool:
    """Call the task's function in this thread; ``False`` (logged) when it failed."""
    try:
        app.tasks[entry.task](*entry.args, **entry.kwargs)
        return True
    except Exception:
        logger.exception("scheduled task failed", extra={"task": entry.task})
        return False
    finally:
        # This thread outlives any request: drop connections the task left broken or stale.
        close_old_connections()


class EmbeddedScheduler(threading.Thread):
    """The one thread that runs the periodic tasks of the embedded server."""

    def __init__(self) -> None:
        super().__init__(name="oms-scheduler", daemon=True)
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Return after the task that is running, if any."""
        self._stopping.set()

    def run(self) -> None:
        from config.celery_app import app

        app.loader.import_default_modules()
        entries = scheduled_tasks(app=app)
        logger.info("embedded scheduler started", extra={"tasks": [entry.task for entry in entries]})
        while not self._stopping.is_set():
            self._stopping.wait(self._run_due(app=app, entries=entries))

    def _run_due(self, *, app: Any, entries: list[ScheduledTask]) -> float:
        """Run what is due; return how long to sleep before the next look."""
        sleep = MAX_SLEEP_SECONDS
        for entry in entries:
            if self._stopping.is_set():
                break
            wait = entry.seconds_until_due()
            if wait <= 0:
                run_task(app=app, entry=entry)
                entry.last_run_at = entry.schedule.now()
                wait = entry.seconds_until_due()
            sleep = min(sleep, wait)
        return max(sleep, 0.05)


_scheduler: EmbeddedScheduler | None = None


def start_scheduler() -> EmbeddedScheduler:
    """Start this process's one scheduler thread (idempotent)."""
    global _scheduler
    if _scheduler is None or not _scheduler.is_alive():
        _scheduler = EmbeddedScheduler()
        _scheduler.start()
    return _scheduler
