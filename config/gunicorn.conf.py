"""gunicorn settings for the web process (deploy/run_stack.py and the image).

Run as ``gunicorn -c config/gunicorn.conf.py -k uvicorn_worker.UvicornWorker config.asgi:application``.

The hooks are why this file exists: tracing is set up in each worker after fork (a span
exporter's thread does not survive ``fork``), and a worker that exits has its Prometheus
multiprocess files marked dead so its live gauges stop counting (its counters still do).
Command-line flags (bind, workers) override what is set here.

Logging: the master logs through the project's one configuration (``logconfig_dict``, JSON
lines), the workers through Django's (the same, config/logging.py), uvicorn's loggers
included; an access log asked for here or with ``--access-logfile`` turns on uvicorn's
request lines in the workers (``WEB_ACCESS_LOG=1``).
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
# gunicorn reads this file before it makes the project importable (whatever the directory).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.logging import logging_config

logconfig_dict = logging_config()

wsgi_app = "config.asgi:application"
worker_class = "uvicorn_worker.UvicornWorker"
bind = f"{os.environ.get('WEB_HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
graceful_timeout = 15
# One line per request only when asked for (WEB_ACCESS_LOG=1): off the hot path by default.
accesslog = "-" if os.environ.get("WEB_ACCESS_LOG", "") == "1" else None
# The app is loaded in each worker (no preload): Django connections and OTel state are per worker.
preload_app = False


def on_starting(server):
    """Before the workers start: they write request lines when the access log is on."""
    if server.cfg.accesslog:
        os.environ["WEB_ACCESS_LOG"] = "1"


def post_fork(server, worker):
    """Set up tracing (with the Django instrumentation) in the new worker."""
    import django

    django.setup()
    from config.telemetry import setup_tracing

    setup_tracing(component="web", instrument_django=True)


def post_worker_init(worker):
    """The application is loaded: freeze what it made (config/heap.py)."""
    from config import heap

    heap.settle()


def child_exit(server, worker):
    """Stop counting the dead worker's live gauges (PROMETHEUS_MULTIPROC_DIR)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
