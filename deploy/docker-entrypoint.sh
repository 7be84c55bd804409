#!/bin/sh
# The image's entrypoint, for every process kind: what deploy/run_stack.py does for `make stack`
# before it starts anything. Prometheus's multiprocess files of a previous run (a restarted
# container keeps its emptyDir or tmpfs) would add its counters and its dead pids' gauges to
# this run's, so the directory starts empty; then the command runs as PID 1's replacement
# (signals reach it directly).
set -eu

if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
  find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete
fi

exec "$@"
