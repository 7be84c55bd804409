#!/usr/bin/env bash
# A local streaming read replica of the local PostgreSQL (docs/operations.md "Read replica").
#
#   deploy/replica.sh start    # copy the primary (pg_basebackup) and start a hot standby on $REPLICA_PORT
#   deploy/replica.sh stop     # stop it and delete its data directory
#   deploy/replica.sh status   # is it running, streaming, how far behind
#
# Then run the platform with DATABASE_REPLICA_URL=postgres://postgres@127.0.0.1:5433/<database>.
#
# The primary must accept replication connections from 127.0.0.1: if pg_hba.conf has no such
# entry, `start` appends `host replication all 127.0.0.1/32 trust` and reloads the primary
# (pg_reload_conf(), never a restart); it is idempotent. wal_level and max_wal_senders need a
# restart to change, so `start` only checks them (the defaults, replica and 10, are right).
# The server runs as the postgres OS user (`runuser` when called as root). Meant for development
# and CI; a production replica is provisioned by the platform that runs PostgreSQL.
set -euo pipefail

REPLICA_PORT="${REPLICA_PORT:-5433}"
REPLICA_DATA_DIR="${REPLICA_DATA_DIR:-/var/tmp/oms-replica-${REPLICA_PORT}}"
PRIMARY_HOST="${PRIMARY_HOST:-127.0.0.1}"
PRIMARY_PORT="${PRIMARY_PORT:-5432}"
PRIMARY_USER="${PRIMARY_USER:-postgres}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)/bin}"
WAIT_SECONDS="${REPLICA_WAIT_SECONDS:-60}"
MARKER="oms-replica.marker"  # a data directory this script made, and may delete

log() { printf 'replica: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# Run a command as the postgres OS user, from a directory it can read.
as_postgres() {
  if [[ "$(id -u)" == "0" ]]; then
    (cd / && runuser -u postgres -- "$@")
  elif [[ "$(id -un)" == "postgres" ]]; then
    (cd / && "$@")
  else
    die "run as root or as postgres (the replica's files belong to postgres)"
  fi
}

primary_sql() { psql -X -q -At -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "$PRIMARY_USER" -d postgres -c "$1"; }
replica_sql() { psql -X -q -At -h 127.0.0.1 -p "$REPLICA_PORT" -U "$PRIMARY_USER" -d postgres -c "$1"; }
replica_answers() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$REPLICA_PORT"; }

# The primary streams WAL to 127.0.0.1 (checked, and the pg_hba.conf entry added with a reload).
prepare_primary() {
  local wal_level senders rules hba
  wal_level="$(primary_sql "SHOW wal_level")"
  senders="$(primary_sql "SHOW max_wal_senders")"
  [[ "$wal_level" == "replica" || "$wal_level" == "logical" ]] ||
    die "the primary has wal_level=$wal_level: set it to replica and restart PostgreSQL (not done here)"
  ((senders > 0)) || die "the primary has max_wal_senders=0: raise it and restart PostgreSQL (not done here)"
  rules="$(primary_sql "SELECT count(*) FROM pg_hba_file_rules
    WHERE type = 'host' AND 'replication' = ANY(database) AND address = '127.0.0.1' AND error IS NULL")"
  if ((rules == 0)); then
    hba="$(primary_sql "SHOW hba_file")"
    log "allowing replication from 127.0.0.1 in $hba (then a reload)"
    printf '\n# deploy/replica.sh: a local streaming replica\nhost replication all 127.0.0.1/32 trust\n' >>"$hba"
    primary_sql "SELECT pg_reload_conf()" >/dev/null
    sleep 1  # the postmaster reloads asynchronously
  fi
}

# A fresh copy of the primary in $REPLICA_DATA_DIR, configured as a hot standby on $REPLICA_PORT.
copy_primary() {
  if [[ -e "$REPLICA_DATA_DIR" ]]; then
    [[ -f "$REPLICA_DATA_DIR/$MARKER" ]] || die "$REPLICA_DATA_DIR exists and is not a replica made here"
    log "removing the stale copy in $REPLICA_DATA_DIR"
    rm -rf "$REPLICA_DATA_DIR"
  fi
  mkdir -p "$REPLICA_DATA_DIR"
  chmod 700 "$REPLICA_DATA_DIR"
  if [[ "$(id -u)" == "0" ]]; then chown postgres:postgres "$REPLICA_DATA_DIR"; fi
  local attempt
  for attempt in 1 2 3; do
    # -R writes standby.signal and primary_conninfo; -X stream copies the WAL it needs.
    if as_postgres "$PG_BIN/pg_basebackup" -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "$PRIMARY_USER" \
      -D "$REPLICA_DATA_DIR" -R -X stream -c fast -w; then
      break
    fi
    ((attempt < 3)) || die "pg_basebackup failed"
    as_postgres find "$REPLICA_DATA_DIR" -mindepth 1 -delete
    sleep 1
  done
  as_postgres touch "$REPLICA_DATA_DIR/$MARKER"
  # The primary's own settings files may live elsewhere (Debian: /etc/postgresql): these are
  # the replica's. Hot standby needs these limits at least as high as the primary's.
  local setting settings=""
  for setting in max_connections max_worker_processes max_wal_senders max_prepared_transactions \
    max_locks_per_transaction; do
    settings+="$setting = $(primary_sql "SHOW $setting")"$'\n'
  done
  as_postgres tee -a "$REPLICA_DATA_DIR/postgresql.conf" >/dev/null <<EOF
# written by deploy/replica.sh
port = $REPLICA_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$REPLICA_DATA_DIR'
hba_file = '$REPLICA_DATA_DIR/pg_hba.conf'
ident_file = '$REPLICA_DATA_DIR/pg_ident.conf'
hot_standby = on
cluster_name = 'oms-replica-$REPLICA_PORT'
ssl = off
$settings
EOF
  as_postgres tee "$REPLICA_DATA_DIR/pg_hba.conf" >/dev/null <<EOF
local all all trust
host all all 127.0.0.1/32 trust
EOF
  as_postgres touch "$REPLICA_DATA_DIR/pg_ident.conf"
}

start() {
  if replica_answers; then
    [[ "$(replica_sql "SELECT pg_is_in_recovery()")" == "t" ]] ||
      die "port $REPLICA_PORT answers but is not a replica"
    log "already running on port $REPLICA_PORT"
    return
  fi
  prepare_primary
  copy_primary
  log "starting the replica on port $REPLICA_PORT ($REPLICA_DATA_DIR)"
  as_postgres "$PG_BIN/pg_ctl" -D "$REPLICA_DATA_DIR" -l "$REPLICA_DATA_DIR/replica.log" -w -t "$WAIT_SECONDS" start >/dev/null ||
    { tail -n 20 "$REPLICA_DATA_DIR/replica.log" >&2 || true; die "the replica did not start"; }
  local deadline=$((SECONDS + WAIT_SECONDS))
  until [[ "$(replica_sql "SELECT pg_is_in_recovery() AND EXISTS (SELECT 1 FROM pg_stat_wal_receiver
      WHERE status = 'streaming')" 2>/dev/null)" == "t" ]]; do
    ((SECONDS < deadline)) || die "the replica does not stream from the primary (see $REPLICA_DATA_DIR/replica.log)"
    sleep 0.5
  done
  log "streaming from $PRIMARY_HOST:$PRIMARY_PORT"
}

stop() {
  if [[ -f "$REPLICA_DATA_DIR/postmaster.pid" ]]; then
    log "stopping the replica on port $REPLICA_PORT"
    as_postgres "$PG_BIN/pg_ctl" -D "$REPLICA_DATA_DIR" -m fast -w -t "$WAIT_SECONDS" stop >/dev/null || true
  fi
  if [[ -f "$REPLICA_DATA_DIR/$MARKER" && "${REPLICA_KEEP_DATA:-0}" != "1" ]]; then
    rm -rf "$REPLICA_DATA_DIR"
  fi
}

status() {
  replica_answers || { echo "not running (port $REPLICA_PORT)"; return 3; }
  replica_sql "SELECT 'in recovery: ' || pg_is_in_recovery()
    || ', streaming: ' || EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')
    || ', replayed: ' || COALESCE(pg_last_wal_replay_lsn()::text, '-')
    || ', last replayed commit: ' || COALESCE(pg_last_xact_replay_timestamp()::text, '-')"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
