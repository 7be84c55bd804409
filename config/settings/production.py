"""Production: secrets, hosts and origins come only from the environment.

``manage.py check --deploy --settings=config.settings.production`` passes with no warning
(tests/security/test_production.py). Required: ``SECRET_KEY``, ``JWT_SIGNING_KEY``,
``ALLOWED_HOSTS``; a missing one stops the start-up instead of falling back to a default.
"""

import ssl

from .base import *  # noqa: F403
from .base import BROKER_URL, DATABASES, LOGGING, SIMPLE_JWT, env

DEBUG = False
SECRET_KEY = env("SECRET_KEY")
# Tokens are signed with their own key, never the development default or SECRET_KEY.
SIMPLE_JWT["SIGNING_KEY"] = env("JWT_SIGNING_KEY")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- HTTPS ----------------------------------------------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
# Probes and the Prometheus scraper talk plain HTTP inside the cluster (patterns match the
# path without its leading slash).
SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SECURE = True
X_FRAME_OPTIONS = "DENY"

# --- Static files ---------------------------------------------------------------------------
# WhiteNoise serves them from gunicorn (Swagger UI's sidecar files, the admin, the web UI);
# with finders on, they are found even where collectstatic did not run.
WHITENOISE_USE_FINDERS = True

# --- TLS to the backing services ------------------------------------------------------------
# PostgreSQL: DATABASE_SSLMODE (base.py; e.g. verify-full) or ?sslmode= in DATABASE_URL, and
# DATABASE_SSLROOTCERT for a private CA.
if env("DATABASE_SSLROOTCERT", default="") and "OPTIONS" in DATABASES["default"]:
    DATABASES["default"]["OPTIONS"]["sslrootcert"] = env("DATABASE_SSLROOTCERT")

# RabbitMQ: an amqps:// BROKER_URL turns TLS on for every kombu connection (relay, consumers,
# readiness); the certificate is verified against the system CAs (or SSL_CERT_FILE). Celery
# takes its options here; BROKER_SSL_CA_CERTS names a private CA.
if BROKER_URL.startswith("amqps://"):
    CELERY_BROKER_USE_SSL = {"cert_reqs": ssl.CERT_REQUIRED}
    if env("BROKER_SSL_CA_CERTS", default=""):
        CELERY_BROKER_USE_SSL["ca_certs"] = env("BROKER_SSL_CA_CERTS")

# --- Observability --------------------------------------------------------------------------
# A tenth of the traces (parent-based, so a sampled order keeps every span), INFO logs.
OTEL_TRACES_SAMPLER_ARG = env.float("OTEL_TRACES_SAMPLER_ARG", default=0.1)
LOGGING["root"] = {**LOGGING["root"], "level": env("LOG_LEVEL", default="INFO")}
