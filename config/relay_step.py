"""``celery worker --with-relay``: the outbox relay as a thread of the Celery worker.

The single-container stack (deploy/run_stack.py) runs it so, one process (about 95 MiB) fewer;
the deployments that scale out run ``manage.py relay_outbox`` as a process of its own. A relay
that fails to start stops the worker (a warm shutdown), as its own process would exit: a
worker that went on without it would leave every row that missed its publish after commit
pending. This module composes (it hosts the event store's relay), so it is not one of config's
platform modules; ``config/__init__.py`` installs it on the Celery app.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from celery import Celery, bootsteps
from click import Option


class RelayStep(bootsteps.StartStopStep):
    """Starts the relay thread with the worker and stops it, its pass finished, with the worker."""

    label = "Relay"
    conditional = True

    def __init__(self, parent: Any, with_relay: bool = False, **kwargs: Any) -> None:
        self.enabled = with_relay
        super().__init__(parent, **kwargs)

    def create(self, parent: Any) -> Any:
        from eventstore.relay import RelayThread

        return RelayThread(on_failure=lambda: os.kill(os.getpid(), signal.SIGTERM))


def install(app: Celery) -> None:
    """Give the app's worker its ``--with-relay`` option."""
    app.user_options["worker"].add(
        Option(["--with-relay"], is_flag=True, default=False, help="Run the outbox relay as a thread.")
    )
    app.steps["worker"].add(RelayStep)
