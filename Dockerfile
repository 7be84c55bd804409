# One image for every process of the stack mode: web (the default command), consumers,
# worker, beat and relay differ only by their command (see docker-compose.yml), or all of
# them under one supervisor: `python deploy/run_stack.py` with WEB_HOST=0.0.0.0.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production \
    PORT=8000

WORKDIR /app
RUN useradd --create-home --uid 10001 --user-group oms

# Dependencies first, so a code change does not reinstall them.
COPY requirements/ requirements/
RUN pip install -r requirements/prod.txt

COPY . .
# collectstatic needs the production settings to load, not real secrets.
RUN SECRET_KEY=build-only JWT_SIGNING_KEY=build-only ALLOWED_HOSTS=localhost \
    python manage.py collectstatic --noinput \
    && mkdir -p var \
    && chown -R oms:oms var

USER oms
EXPOSE 8000
CMD ["sh", "-c", "exec gunicorn --config=config/gunicorn.conf.py --worker-class=uvicorn_worker.UvicornWorker config.asgi:application --bind 0.0.0.0:${PORT} --workers ${WEB_CONCURRENCY:-2} --access-logfile -"]
