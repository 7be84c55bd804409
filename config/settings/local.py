"""Development and embedded mode: ``make run`` and ``make stack`` use these settings."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DEBUG", default=True)
