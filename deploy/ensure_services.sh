#!/usr/bin/env bash
# Start the local PostgreSQL, RabbitMQ and Redis that are down (docs/architecture.md "Run modes"), and wait until
# each answers. Idempotent: a service that already answers is left alone. A service whose URL
# (DATABASE_URL, BROKER_URL, REDIS_URL) names another host is not ours to start: skipped.
set -euo pipefail

WAIT_SECONDS="${SERVICES_WAIT_SECONDS:-120}"

# One JSON object per line, as every process of the stack writes (config/logging.py's fields).
json_string() {
  local text="$1"
  text="${text//\\/\\\\}"
  text="${text//\"/\\\"}"
  text="${text//$'\t'/\\t}"
  # Other control characters (a terminal colour's escape) are not valid in a JSON string.
  text="$(printf '%s' "$text" | tr -d '\000-\010\012-\037')"
  printf '"%s"' "$text"
}

log_at() {
  local level="$1"; shift
  local now
  now="$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)"
  printf '{"timestamp":"%s","level":"%s","logger":"ensure_services","event":%s,"process":"ensure_services","pid":%d}\n' \
    "$now" "$level" "$(json_string "$*")" "$$" >&2
}

log() { log_at INFO "$@"; }

# A starting server's own output (pg_ctlcluster, rabbitmq-server, redis-server), a line each.
log_output() {
  local line
  while IFS= read -r line; do
    [[ -n "${line// /}" ]] && log_at INFO "$line"
  done
}

# The host part of a URL like scheme://user:pass@host:port/path (empty when there is none).
url_host() {
  local rest="${1#*://}"
  rest="${rest%%/*}"
  rest="${rest##*@}"
  rest="${rest%:*}"
  printf '%s' "${rest#[}" | tr -d ']'
}

is_local() {
  local host
  host="$(url_host "${1:-}")"
  [[ -z "${1:-}" || -z "$host" || "$host" == "127.0.0.1" || "$host" == "localhost" || "$host" == "::1" ]]
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {
  local name="$1"; shift
  local deadline=$((SECONDS + WAIT_SECONDS))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log_at ERROR "$name did not answer within ${WAIT_SECONDS}s"
      return 1
    fi
    sleep 0.5
  done
}

postgres_up() {
  if command -v pg_isready >/dev/null; then pg_isready -q -h 127.0.0.1 -p 5432; else port_open 5432; fi
}

redis_up() {
  if command -v redis-cli >/dev/null; then [[ "$(redis-cli -h 127.0.0.1 -p 6379 ping)" == "PONG" ]]; else port_open 6379; fi
}

rabbitmq_up() { port_open 5672; }

ensure_postgres() {
  is_local "${DATABASE_URL:-}" || { log "DATABASE_URL is remote: not starting PostgreSQL"; return; }
  postgres_up && return
  log "starting PostgreSQL"
  { pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start || true; } 2>&1 | log_output
  wait_for PostgreSQL postgres_up
}

ensure_rabbitmq() {
  is_local "${BROKER_URL:-}" || { log "BROKER_URL is remote: not starting RabbitMQ"; return; }
  if ! rabbitmq_up; then
    log "starting RabbitMQ"
    { rabbitmq-server -detached || true; } 2>&1 | log_output
    { timeout "$WAIT_SECONDS" rabbitmqctl await_startup >/dev/null || true; } 2>&1 | log_output
    wait_for RabbitMQ rabbitmq_up
  fi
  ensure_rabbitmq_management
}

# The management API (port 15672): the tests create their vhosts through it where rabbitmqctl
# cannot reach the node (tests/fixtures/rabbitmq.py), and check that path here too. Enabling
# the plugin does not restart the broker.
ensure_rabbitmq_management() {
  port_open 15672 && return
  command -v rabbitmq-plugins >/dev/null || return 0
  log "enabling RabbitMQ's management plugin"
  { rabbitmq-plugins -q enable rabbitmq_management || true; } 2>&1 | log_output
}

ensure_redis() {
  is_local "${REDIS_URL:-}" || { log "REDIS_URL is remote: not starting Redis"; return; }
  redis_up && return
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no 2>&1 | log_output
  wait_for Redis redis_up
}

ensure_postgres
ensure_rabbitmq
ensure_redis
log "PostgreSQL, RabbitMQ and Redis answer"
