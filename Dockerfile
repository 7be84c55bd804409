# One image for every process of the stack mode: web (the default command), consumers,
# worker, beat and relay differ only by their command (docker-compose.yml, deploy/k8s), or all
# of them under one supervisor: `python deploy/run_stack.py` (WEB_HOST is 0.0.0.0 here).
# Schema and broker topology are a one-shot step before any of them starts:
# `python manage.py migrate --noinput && python manage.py declare_topology`.
FROM python:3.11-slim

# Metrics and tracing as `make stack` sets them up: every process writes its Prometheus
# metrics to PROMETHEUS_MULTIPROC_DIR (emptied by the entrypoint at each start), and the web
# process runs under config/gunicorn.conf.py, whose post_fork hook sets up tracing in each
# worker (OTEL_EXPORTER_OTLP_ENDPOINT turns export on).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus-multiproc \
    WEB_HOST=0.0.0.0 \
    PORT=8000

WORKDIR /app
RUN useradd --create-home --uid 10001 --user-group oms

# Dependencies first, so a code change does not reinstall them.
COPY requirements/ requirements/
RUN pip install --no-cache-dir -r requirements/prod.txt

COPY . .
# collectstatic needs the production settings to load, not real secrets.
RUN SECRET_KEY=build-only JWT_SIGNING_KEY=build-only ALLOWED_HOSTS=localhost \
    python manage.py collectstatic --noinput \
    && mkdir -p var \
    && chown -R oms:oms var

# Numeric, so Kubernetes can check runAsNonRoot without a runAsUser of its own.
USER 10001
EXPOSE 8000
ENTRYPOINT ["/app/deploy/docker-entrypoint.sh"]
# Bind, workers (WEB_CONCURRENCY), worker class and the post_fork tracing hook come from the
# config file.
CMD ["gunicorn", "--config=config/gunicorn.conf.py"]
