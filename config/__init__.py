"""Project configuration: settings, URLs, WSGI and the Celery application."""

from . import relay_step
from .celery_app import app as celery_app

relay_step.install(celery_app)

__all__ = ["celery_app"]
