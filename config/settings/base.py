"""Settings shared by every environment, read from the environment with django-environ.

Two run modes share this file (docs/architecture.md "Run modes"): with
``DATABASE_URL``/``BROKER_URL``/``REDIS_URL`` unset the project runs *embedded* (SQLite, in-process
bus, local-memory cache); with them set it runs in *stack* mode (PostgreSQL, RabbitMQ, Redis).
"""

from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONCE as CSP_NONCE

from config import services
from config.logging import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()

SECRET_KEY = env("SECRET_KEY", default="dev-only-insecure-secret-key-change-me-0123456789abcdef")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "axes",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "django_prometheus",
    "eventstore",
    "orders",
    "inventory",
    "payments",
    "sagas",
    "queries",
    "config.audit",
    # Last: wires the contexts together once they are all loaded (config/composition/apps.py).
    "config.composition",
]

MIDDLEWARE = [
    # First and last: HTTP rate, latency and errors (django_http_* metrics) see every response.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # A database connection the server closed between requests is dropped before use.
    "config.connections.ClosedConnectionMiddleware",
    "config.logging.RequestLogContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Oversized bodies and NUL in the URL are refused before anything reads them.
    "config.middleware.RequestLimitsMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Turns a login refused by django-axes into the 429 lockout answer (orders/lockout.py).
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Run mode -------------------------------------------------------------------------------
DATABASE_URL = env("DATABASE_URL", default="")
BROKER_URL = env("BROKER_URL", default="")
REDIS_URL = env("REDIS_URL", default="")
EMBEDDED = not (DATABASE_URL or BROKER_URL)

# --- Service (docs/architecture.md "Moving a context out") ---------------------------------------
# "all": every context in this process (make run, make stack). A context's name (orders, payments,
# inventory, queries): this process is that service of `make split`, serving only its contexts'
# URLs, queues, periodic tasks and gauges; another context's data is read from its service
# over HTTP (config/composition/remote.py), never from its tables.
OMS_SERVICE = env("OMS_SERVICE", default=services.ALL)
OMS_CONTEXTS = services.contexts_of(OMS_SERVICE)
SPLIT = OMS_SERVICE != services.ALL
if SPLIT and EMBEDDED:
    raise ValueError("OMS_SERVICE names one service of the stack mode: set DATABASE_URL and BROKER_URL")
ORDERS_SERVICE_URL = env("ORDERS_SERVICE_URL", default=f"http://127.0.0.1:{services.DEFAULT_PORTS['orders']}")
PAYMENTS_SERVICE_URL = env(
    "PAYMENTS_SERVICE_URL", default=f"http://127.0.0.1:{services.DEFAULT_PORTS['payments']}"
)
INVENTORY_SERVICE_URL = env(
    "INVENTORY_SERVICE_URL", default=f"http://127.0.0.1:{services.DEFAULT_PORTS['inventory']}"
)
# Seconds a call to another service may take before the caller answers 503.
SERVICE_CALL_TIMEOUT = env.float("SERVICE_CALL_TIMEOUT", default=2.0)

if DATABASE_URL:
    DATABASES = {"default": env.db_url_config(DATABASE_URL)}
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update(
        {
            # Keep transactions short: a session left idle in a transaction stalls every
            # position reader (docs/architecture.md "Write path and delivery").
            "options": "-c idle_in_transaction_session_timeout=60000",
        }
    )
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    # No SELECT 1 before each request: config.connections.ClosedConnectionMiddleware drops a
    # connection the server has closed without a round trip; consumers handle outages.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
    if env("DATABASE_SSLMODE", default=""):
        DATABASES["default"]["OPTIONS"]["sslmode"] = env("DATABASE_SSLMODE")
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env("SQLITE_PATH", default=str(BASE_DIR / "var" / "oms.sqlite3")),
            "OPTIONS": {
                # One writer at a time, taken at BEGIN: no upgrade deadlocks (Django 5.1+).
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": (
                    "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;PRAGMA busy_timeout=20000;"
                ),
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Read replica (docs/operations.md "Read replica", config/replica.py): the query side's lists, search and
# analytics read from this hot standby; commands, projections and everything else use the
# primary. It is skipped (the primary answers) while its replay is more than
# DATABASE_REPLICA_MAX_LAG seconds behind, or when it fails.
DATABASE_REPLICA_URL = env("DATABASE_REPLICA_URL", default="")
DATABASE_REPLICA_MAX_LAG = env.float("DATABASE_REPLICA_MAX_LAG", default=10.0)
DATABASE_ROUTERS = ["config.replica.ReplicaRouter"]
if DATABASE_URL and DATABASE_REPLICA_URL:
    DATABASES["replica"] = env.db_url_config(DATABASE_REPLICA_URL)
    DATABASES["replica"]["OPTIONS"] = {
        **DATABASES["default"]["OPTIONS"],
        **DATABASES["replica"].get("OPTIONS", {}),
        # A replica that does not answer costs a read at most this long, then the primary serves.
        "connect_timeout": env.int("DATABASE_REPLICA_CONNECT_TIMEOUT", default=2),
    }
    DATABASES["replica"]["CONN_MAX_AGE"] = DATABASES["default"]["CONN_MAX_AGE"]
    DATABASES["replica"]["CONN_HEALTH_CHECKS"] = False
    # Tests: the replica is the test database's copy, never created or flushed on its own.
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                # A cache outage degrades reads to the database; it never fails a request.
                "IGNORE_EXCEPTIONS": True,
                "SOCKET_CONNECT_TIMEOUT": 0.5,
                "SOCKET_TIMEOUT": 0.5,
            },
            "KEY_PREFIX": env("CACHE_KEY_PREFIX", default="oms"),
        }
    }
    DJANGO_REDIS_IGNORE_EXCEPTIONS = True
    DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Auth -----------------------------------------------------------------------------------
AUTH_USER_MODEL = "orders.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
DEMO_PASSWORD = env("DEMO_PASSWORD", default="demo-pass-123")

# Repeated failed logins — the admin's and POST /api/auth/token — lock the account and the
# address (django-axes, attempts counted in the database; orders/lockout.py): the failure that
# reaches the limit and every attempt during the cool-off are answered 429.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_LOCKOUT_MINUTES = env.int("LOGIN_LOCKOUT_MINUTES", default=15)
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_LOCKOUT_MINUTES)
# Each on its own: N failures lock the account from any address, and the address for any account.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# Attempts during a lock are refused without being counted, so they do not prolong it.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_CLIENT_IP_CALLABLE = "orders.lockout.client_address"
AXES_LOCKOUT_CALLABLE = "orders.lockout.lockout_response"
AXES_HTTP_RESPONSE_CODE = 429
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False
# The attempts' admin is registered by orders/admin.py, its action behind a permission.
AXES_ENABLE_ADMIN = False
# Seconds a user's active flag, role and customer id stay cached for the per-request check of
# access tokens (orders/sessions.py); saving or deleting the user forgets them at once.
AUTH_USER_STATE_SECONDS = env.int("AUTH_USER_STATE_SECONDS", default=30)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "config.authentication.RequestJWTAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # Strict JSON everywhere: no NaN, duplicate keys, NUL or lone surrogates (config/parsers.py).
    "DEFAULT_PARSER_CLASSES": ["config.parsers.StrictJSONParser"],
    "DEFAULT_THROTTLE_CLASSES": [
        "config.throttling.UserRateThrottle",
        "config.throttling.AnonRateThrottle",
    ],
    # Trusted proxies in front of the web processes; 0 keys anonymous clients by REMOTE_ADDR
    # (X-Forwarded-For is the client's to forge unless a known proxy wrote it).
    "NUM_PROXIES": env.int("API_NUM_PROXIES", default=0),
    # drf-spectacular plus the statuses, problem media type and headers every view shares.
    "DEFAULT_SCHEMA_CLASS": "config.openapi.ProblemAutoSchema",
    "EXCEPTION_HANDLER": "config.problems.problem_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(hours=5),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=7),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "ALGORITHM": "HS256",
    "SIGNING_KEY": env("JWT_SIGNING_KEY", default=SECRET_KEY),
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_CLAIM": "user_id",
    "USER_ID_FIELD": "username",
    "TOKEN_USER_CLASS": "orders.auth.TokenUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Order management platform",
    "DESCRIPTION": "Event-sourced orders, inventory and payments with an orchestrated saga.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Issue 12/13: one tag per context; the status enums named after what they are.
    "TAGS": [
        {"name": "auth", "description": "Tokens: obtain, rotate, log out"},
        {"name": "orders", "description": "Placing, reading and cancelling orders (command side)"},
        {"name": "queries", "description": "Order lists, search and analytics (read models)"},
        {"name": "inventory", "description": "The catalogue, stock and reservations"},
        {"name": "payments", "description": "Payments and refunds"},
        {"name": "admin", "description": "The operations console under /api/admin/ (ADMIN only)"},
        {"name": "health", "description": "Liveness and readiness probes"},
    ],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.openapi.strict_inputs",
    ],
    "ENUM_NAME_OVERRIDES": {
        "OrderStatusEnum": "orders.domain.STATUSES",
        "FailureReasonEnum": "orders.serializers.FAILURE_REASONS",
        "SagaStateEnum": "sagas.public.SAGA_STATES",
        "SagaStepEnum": "sagas.public.SAGA_STEPS",
        "PaymentStatusEnum": "payments.domain.PaymentStatus",
        "ReservationStateEnum": "inventory.domain.ReservationState",
        "HealthStatusEnum": "config.health.HEALTH_STATUSES",
    },
}

# --- Internationalisation and static files --------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- Messaging (docs/architecture.md "Messages") -------------------------------------------------
CELERY_BROKER_URL = BROKER_URL or "memory://"
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = services.task_queue(OMS_SERVICE)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
ANALYTICS_REFRESH_SECONDS = env.float("ANALYTICS_REFRESH_SECONDS", default=60.0)
# The projections' catch-up (queries/replay.py) leaves events younger than this to the bus: it
# fills gaps, and does not race the live projector through a backlog it is still draining.
PROJECTION_CATCH_UP_GRACE_SECONDS = env.float("PROJECTION_CATCH_UP_GRACE_SECONDS", default=30.0)
CELERY_BEAT_SCHEDULE = {
    "relay-outbox-safety-net": {"task": "eventstore.tasks.relay_outbox", "schedule": 5.0},
    # Retention (eventstore/retention.py): bounded batches per run, so runs are frequent.
    "prune-sent-outbox": {
        "task": "eventstore.tasks.prune_outbox",
        "schedule": env.float("PRUNE_EVERY_SECONDS", default=600.0),
        "options": {"expires": env.float("PRUNE_EVERY_SECONDS", default=600.0) * 0.9},
    },
    "prune-inbox": {
        "task": "eventstore.tasks.prune_inbox",
        "schedule": env.float("PRUNE_EVERY_SECONDS", default=600.0),
        "options": {"expires": env.float("PRUNE_EVERY_SECONDS", default=600.0) * 0.9},
    },
    "payments-resume-stalled": {"task": "payments.tasks.resume_payments", "schedule": 5.0},
    "payments-reconcile": {
        "task": "payments.tasks.reconcile_payments",
        "schedule": env.float("PAYMENT_RECONCILE_EVERY", default=30.0),
    },
    "inventory-expire-reservations": {"task": "inventory.tasks.expire_reservations", "schedule": 5.0},
    "sagas-sweep-timeouts": {"task": "sagas.tasks.sweep_timeouts", "schedule": 1.0},
    "orders-prune-idempotency-keys": {"task": "orders.tasks.prune_idempotency_keys", "schedule": 3600.0},
    # A full recompute of both views (~5.6 µs per stored order, docs/architecture.md "Query side"): once a
    # minute by default; a refresh still queued when the next is due is dropped.
    "queries-refresh-analytics": {
        "task": "queries.tasks.refresh_analytics",
        "schedule": ANALYTICS_REFRESH_SECONDS,
        "options": {"expires": ANALYTICS_REFRESH_SECONDS * 0.9},
    },
    "queries-catch-up-projections": {"task": "queries.tasks.catch_up_projections", "schedule": 5.0},
    # Reads every order: once a minute, its counts kept for /metrics (oms_money_discrepancies).
    "audit-money": {
        "task": "config.audit.tasks.audit_money",
        "schedule": 60.0,
        "options": {"expires": 55.0},
    },
}
# A split service schedules only its own contexts' tasks (config/services.py).
CELERY_BEAT_SCHEDULE = services.beat_schedule(CELERY_BEAT_SCHEDULE, OMS_SERVICE)

# The periodic money audit (config.audit.tasks) looks at the orders placed in the last this many
# seconds (it reads every one of them); 0: all orders. manage.py audit_money reads all by default.
MONEY_AUDIT_WINDOW = env.float("MONEY_AUDIT_WINDOW", default=86400.0)

# Tasks the embedded scheduler (eventstore/scheduler.py) does not run: there the in-process
# bus is the relay, and there is no broker to publish to.
EMBEDDED_SCHEDULE_EXCLUDE = ["eventstore.tasks.relay_outbox"]

# Seconds a failed message waits before each retry; then it is dead-lettered.
CONSUMER_RETRY_DELAYS = env.list("CONSUMER_RETRY_DELAYS", cast=float, default=[1.0, 4.0, 16.0])
# A consumer handles what it holds as one batch (one transaction per context, one ack): large
# batches cost few statements per message (eventstore.unit_of_work).
CONSUMER_PREFETCH = env.int("CONSUMER_PREFETCH", default=300)
# A context's own prefetch, where it differs. A consumer of several queues gets deliveries from
# each in proportion to its prefetch (RabbitMQ fills each consumer's prefetch, and a batch takes
# what arrived first): the queries projection needs five of the eight deliveries of an order that
# the process of queries, inventory and payments gets, so it has the larger share.
CONSUMER_PREFETCH_BY_CONTEXT = env.dict(
    "CONSUMER_PREFETCH_BY_CONTEXT", cast={"value": int}, default={"queries": 1000}
)
CONSUMER_BATCH_SIZE = env.int("CONSUMER_BATCH_SIZE", default=300)
# How long a consumer holding messages waits for more before it handles them. Batches form by
# themselves under load (messages arrive while the previous batch is handled); on an idle
# stack every hop of an order pays this wait, so it is short.
CONSUMER_BATCH_WAIT_MS = env.float("CONSUMER_BATCH_WAIT_MS", default=1.0)
RELAY_BATCH_SIZE = env.int("RELAY_BATCH_SIZE", default=500)
RELAY_CLAIM_SECONDS = env.int("RELAY_CLAIM_SECONDS", default=30)
# An outbox row returned unroutable (no queue bound) on this attempt or a later one becomes a
# dead letter (consumer "relay") instead of being retried forever.
RELAY_MAX_ATTEMPTS = env.int("RELAY_MAX_ATTEMPTS", default=10)
# Whoever commits outbox rows publishes them right after the commit, from a background thread
# of its own process (eventstore/publish_after_commit.py); the relay then only sweeps what that
# left behind. On by default in the stack mode (an AMQP broker and a database URL), never in the
# embedded mode, whose in-process dispatcher is the delivery.
OUTBOX_PUBLISH_ON_COMMIT = not EMBEDDED and env.bool(
    "OUTBOX_PUBLISH_ON_COMMIT",
    default=bool(DATABASE_URL) and BROKER_URL.startswith(("amqp://", "amqps://")),
)
# Rows committed but not yet handed to the broker that one process may hold in memory; past it a
# hand-off is dropped (the relay sweeps those rows), so a slow broker never grows memory.
OUTBOX_PUBLISH_MAX_PENDING = env.int("OUTBOX_PUBLISH_MAX_PENDING", default=20000)
# The relay leaves unclaimed rows younger than this to the process that committed them.
RELAY_MIN_AGE_SECONDS = env.float("RELAY_MIN_AGE_SECONDS", default=1.0)
# Seconds the relay sleeps after a short batch: a safety net's sweep when rows are published
# after commit, the delivery's own pace when they are not.
RELAY_IDLE_POLL_SECONDS = env.float(
    "RELAY_IDLE_POLL_SECONDS", default=0.5 if OUTBOX_PUBLISH_ON_COMMIT else 0.05
)
# --- Retention (eventstore/retention.py; the event store itself is never pruned) -------------
# Sent outbox rows are kept this long (a sent row is never published again).
OUTBOX_RETENTION_HOURS = env.int("OUTBOX_RETENTION_HOURS", default=72)
# Inbox rows are kept this long after their consumer's last handled message; far longer than
# any redelivery (seconds), and rows a pending publish or an unreplayed dead letter may still
# need are kept whatever their age.
INBOX_RETENTION_DAYS = env.int("INBOX_RETENTION_DAYS", default=7)
# Each prune deletes in batches of this many rows (one short transaction each), at most this
# many batches per table and run; the next run goes on.
PRUNE_BATCH_SIZE = env.int("PRUNE_BATCH_SIZE", default=5000)
PRUNE_MAX_BATCHES = env.int("PRUNE_MAX_BATCHES", default=100)
# Group commit of POST /api/orders (orders/intake.py): a batch closes when this many orders
# joined it or this many milliseconds after it opened, and commits them all at once.
ORDER_BATCH_MAX = env.int("ORDER_BATCH_MAX", default=200)
ORDER_BATCH_WAIT_MS = env.float("ORDER_BATCH_WAIT_MS", default=2.0)
# The thin POST /api/orders endpoint (orders/asgi.py), per web worker: threads for the
# requests' checks (they wait on Redis; 0: Django's sync thread, as in tests), and batch
# writers (each keeps a database connection; batches grow while all of them are busy).
ORDER_INTAKE_THREADS = env.int("ORDER_INTAKE_THREADS", default=16)
ORDER_BATCH_WRITERS = env.int("ORDER_BATCH_WRITERS", default=2)
# Bounded work in progress (orders/admission.py): a new order waits while this many are open
# (sagas neither terminal nor parked; 0: no bound), counted at most every RECOUNT_MS per web
# process; after HOLD_SECONDS without room it is refused with 503 and Retry-After.
ORDER_INTAKE_MAX_OPEN = env.int("ORDER_INTAKE_MAX_OPEN", default=500)
ORDER_INTAKE_HOLD_SECONDS = env.float("ORDER_INTAKE_HOLD_SECONDS", default=5.0)
ORDER_INTAKE_RECOUNT_MS = env.float("ORDER_INTAKE_RECOUNT_MS", default=50.0)

# --- Business settings ----------------------------------------------------------------------
SAGA_TIMEOUT = env.float("SAGA_TIMEOUT", default=300.0)
# A compensation step (release, refund) unanswered this long is retried; after the retries it
# parks the saga with needs_attention.
SAGA_STEP_TIMEOUT = env.float("SAGA_STEP_TIMEOUT", default=min(SAGA_TIMEOUT, 30.0))
SAGA_STEP_RETRIES = env.int("SAGA_STEP_RETRIES", default=3)
# A forward step (reserve, pay, confirm) unanswered this long is sent again (doubling each
# time, until SAGA_TIMEOUT): a command lost anywhere costs seconds, not the order.
SAGA_RESEND_AFTER = env.float("SAGA_RESEND_AFTER", default=10.0)
PAYMENT_TIMEOUT = env.float("PAYMENT_TIMEOUT", default=3.0)
PAYMENT_RETRY_ATTEMPTS = env.int("PAYMENT_RETRY_ATTEMPTS", default=3)
PAYMENT_RETRY_BACKOFF = env.float("PAYMENT_RETRY_BACKOFF", default=0.2)
PAYMENT_RESUME_AFTER = env.float("PAYMENT_RESUME_AFTER", default=5.0)
# The longest a charge call can still take effect at the gateway after it was made (the
# gateway's own request deadline). A payment whose call timed out stays UNKNOWN until that call
# has ended or this much time has passed, never FAILED while it may still capture.
# 0 means 2 x PAYMENT_TIMEOUT + 1 s.
PAYMENT_CALL_LIMIT = env.float("PAYMENT_CALL_LIMIT", default=0.0)
# Reconciliation with the gateway's ledger (payments.tasks.reconcile_payments): how far back
# it looks, in seconds, at payments in every state.
PAYMENT_RECONCILE_WINDOW = env.float("PAYMENT_RECONCILE_WINDOW", default=3600.0)
PAYMENT_BREAKER_OPEN_SECONDS = env.float("PAYMENT_BREAKER_OPEN_SECONDS", default=5.0)
# Threads of a `manage.py consume` process that consumes payments running charges after their
# ProcessPayment committed (payments/charge_pool.py), so a charge does not hold up the other
# messages; 0 runs them inline on the consumer's thread. Elsewhere charges always run inline.
# Each runner keeps a database connection: 8 suits deployments that scale consumers out; the
# stack mode, with one process for every charge, runs 32 (deploy/run_stack.py).
PAYMENT_CHARGE_WORKERS = env.int("PAYMENT_CHARGE_WORKERS", default=8)
# Connections a process keeps to the built-in gateway simulator's ledger (payments/simulator.py),
# taken in turn by the calls in flight.
PAYMENT_LEDGER_CONNECTIONS = env.int("PAYMENT_LEDGER_CONNECTIONS", default=8)
INVENTORY_RESERVATION_CONCURRENCY = env.int("INVENTORY_RESERVATION_CONCURRENCY", default=8)
INVENTORY_RESERVATION_WAIT = env.float("INVENTORY_RESERVATION_WAIT", default=2.0)
# Request rates (config/throttling.py); "off" disables one. Counted in the default cache.
API_THROTTLE_USER = env("API_THROTTLE_USER", default="1000/min")
API_THROTTLE_ANON = env("API_THROTTLE_ANON", default="60/min")
API_THROTTLE_LOGIN = env("API_THROTTLE_LOGIN", default="10/min")

# --- Request limits and browser policy ------------------------------------------------------
# A larger declared body is a 413 before it is read (config/middleware.py); Django's own
# limit is the same, for bodies that come without a Content-Length.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=256 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000

# django-csp 4 (Django 5.2 has no CSP of its own). The web UI loads only its own app.js and
# app.css; Swagger UI its sidecar files plus one inline script and style, which carry the
# request's nonce (templates/drf_spectacular/swagger_ui.html); the admin needs nothing inline.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", CSP_NONCE],
        "style-src": ["'self'", CSP_NONCE],
        # Swagger UI's stylesheet draws its icons as data: URIs.
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# --- Observability (docs/operations.md "Tracing") --------------------------------------------------
# Traces: OTLP over HTTP to OTEL_EXPORTER_OTLP_ENDPOINT (Jaeger ingests OTLP); parent-based
# ratio sampling, 100% unless OTEL_TRACES_SAMPLER_ARG says otherwise (production: 10%).
OTEL_SERVICE_NAME = env("OTEL_SERVICE_NAME", default="oms")
OTEL_EXPORTER_OTLP_ENDPOINT = env("OTEL_EXPORTER_OTLP_ENDPOINT", default="")
OTEL_TRACES_SAMPLER_ARG = env.float("OTEL_TRACES_SAMPLER_ARG", default=1.0)
PROMETHEUS_EXPORT_MIGRATIONS = False

# JSON lines with correlation_id, trace_id and user_id on every record, one configuration for
# every process of both modes (config/logging.py: LOG_LEVEL, WEB_ACCESS_LOG).
LOGGING_CONFIG = "config.logging.configure"
LOGGING = logging_config()

# --- Ops console (docs/console.md) ------------------------------------------------------------
# A link from an order's console to its trace, e.g. "http://localhost:16686/trace/{trace_id}".
TRACE_URL_TEMPLATE = env("TRACE_URL_TEMPLATE", default="")
