"""The test suite: stack mode on the local PostgreSQL, RabbitMQ and Redis by default."""

import os
from urllib.parse import urlsplit

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/oms")
os.environ.setdefault("BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/oms_test")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CONSUMER_RETRY_DELAYS", "0.2,0.4,0.8")


def _isolate_xdist_worker() -> None:
    """Under pytest-xdist (``make test`` runs two workers) each worker has its own vhost,
    Redis database and range of server ports; pytest-django names its database
    ``test_<name>_gw<N>``. The processes a test starts inherit the worker's variables, already
    set apart (``OMS_TEST_WORKER``), so they are not set apart twice.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker or os.environ.get("OMS_TEST_WORKER") == worker:
        return
    number = int(worker.removeprefix("gw"))
    broker = urlsplit(os.environ["BROKER_URL"])
    vhost = f"{broker.path.lstrip('/') or 'oms_test'}_{worker}"
    os.environ["BROKER_URL"] = broker._replace(path=f"/{vhost}").geturl()
    redis = urlsplit(os.environ["REDIS_URL"])
    database = (int(redis.path.lstrip("/") or 0) - number) % 16
    os.environ["REDIS_URL"] = redis._replace(path=f"/{database}").geturl()
    first, last = (int(p) for p in os.environ.get("TEST_SERVER_PORTS", "8300-8899").split("-"))
    width = (last - first + 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ["TEST_SERVER_PORTS"] = f"{first + number * width}-{first + (number + 1) * width - 1}"
    os.environ["OMS_TEST_WORKER"] = worker


_isolate_xdist_worker()

from .base import *  # noqa: E402, F403 - after the variables above
from .base import DATABASES, env  # noqa: E402

DATABASES["default"]["CONN_MAX_AGE"] = 0
if "replica" in DATABASES:
    DATABASES["replica"]["CONN_MAX_AGE"] = 0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Test-only hooks of the transport (eventstore): extra handler modules that consumer
# subprocesses import at start-up, and a pause between publishing and marking outbox rows
# sent so a test can kill the relay inside that window.
EXTRA_SUBSCRIPTION_MODULES = env.list("EXTRA_SUBSCRIPTION_MODULES", default=[])
RELAY_PAUSE_AFTER_PUBLISH = env.float("RELAY_PAUSE_AFTER_PUBLISH", default=0.0)

# The suite's processes deliver through the relay as before, sweeping at once, unless a test turns
# publishing after commit on (tests/eventstore/test_publish_after_commit.py): the relay tests
# and crash tests pin what the relay does with fresh rows.
OUTBOX_PUBLISH_ON_COMMIT = env.bool("OUTBOX_PUBLISH_ON_COMMIT", default=False)
RELAY_MIN_AGE_SECONDS = env.float("RELAY_MIN_AGE_SECONDS", default=0.0)
RELAY_IDLE_POLL_SECONDS = env.float("RELAY_IDLE_POLL_SECONDS", default=0.05)

# The suite makes many requests per second from one client; the throttling tests lower these
# with override_settings.
API_THROTTLE_USER = env("API_THROTTLE_USER", default="100000/min")
API_THROTTLE_ANON = env("API_THROTTLE_ANON", default="100000/min")

# The thin POST /api/orders endpoint (orders/asgi.py) runs its checks and writes on Django's
# thread for synchronous code, so in-process tests see their own transaction's data.
ORDER_INTAKE_THREADS = env.int("ORDER_INTAKE_THREADS", default=0)

# The catch-up tests make a gap and run catch-up at once: no grace unless a test sets one.
PROJECTION_CATCH_UP_GRACE_SECONDS = env.float("PROJECTION_CATCH_UP_GRACE_SECONDS", default=0.0)
