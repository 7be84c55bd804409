"""The test suite: stack mode on the local PostgreSQL, RabbitMQ and Redis by default."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/oms")
os.environ.setdefault("BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/oms_test")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CONSUMER_RETRY_DELAYS", "0.2,0.4,0.8")

from .base import *  # noqa: F403
from .base import DATABASES

DATABASES["default"]["CONN_MAX_AGE"] = 0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
