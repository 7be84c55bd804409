"""The Celery worker alone, as compose and Kubernetes run it: its whole output is JSON lines
without the stack's supervisor (its start, and the note its signal handler writes when it
stops), and its tasks are traced with either pool."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.fixtures.stack import ROOT, subprocess_env, wait_until

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@contextmanager
def celery_worker(tmp_path: Path, *options: str, **env: str) -> Iterator[Path]:
    """``celery worker`` on the task queue, ready; its output file. SIGTERM when the block ends."""
    out = tmp_path / "worker.log"
    (tmp_path / "metrics").mkdir()
    celery = str(Path(sys.executable).parent / "celery")
    with out.open("wb") as log:
        worker = subprocess.Popen(
            [celery, "-A", "config", "--quiet", "worker", "-Q", "oms.tasks", *options],
            cwd=ROOT,
            env=subprocess_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"), **env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "ready" in out.read_text(), timeout=60, message="the worker ready")
        yield out
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)


def test_a_worker_started_and_stopped_alone_writes_only_json_lines(tmp_path):
    with celery_worker(tmp_path) as out:
        pass

    lines = [line for line in out.read_text().splitlines() if line.strip()]
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
    assert all(isinstance(event, dict) and event["process"] == "worker" for event in events), lines
    [note] = [event for event in events if "shutdown" in event["event"]]
    assert note["event"] == "worker: Warm shutdown (MainProcess)" and note["level"] == "INFO"
    assert note["logger"] == "celery.apps.worker"
    # nothing blank either: Celery's own note starts with a newline
    assert len(lines) == len(out.read_text().splitlines())


def test_the_note_is_one_json_line_written_at_once(tmp_path):
    from config.celery_app import say_as_json_line

    path = tmp_path / "out"
    with path.open("w") as stream:
        say_as_json_line("\nworker: Hitting Ctrl+C again will terminate all running tasks!", stream)
    [line] = path.read_text().splitlines()
    parsed = json.loads(line)
    assert parsed["event"] == "worker: Hitting Ctrl+C again will terminate all running tasks!"
    assert parsed["logger"] == "celery.apps.worker"


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_the_worker_traces_its_tasks_in_either_pool(tmp_path, pool):
    # The stack mode runs a pool of threads (deploy/run_stack.py), compose and Kubernetes the
    # default forked children: tracing is set up where the tasks run in both.
    from config.celery_app import app

    spans_file = tmp_path / "spans.jsonl"
    with celery_worker(tmp_path, f"--pool={pool}", "-c", "1", OTEL_SPANS_FILE=str(spans_file)) as out:
        app.send_task("orders.tasks.prune_idempotency_keys", queue="oms.tasks")

        def task_spans() -> list[dict]:
            lines = spans_file.read_text().splitlines() if spans_file.exists() else []
            spans = [json.loads(line) for line in lines if line.strip()]
            return [s for s in spans if "prune_idempotency_keys" in s["name"]]

        [span] = wait_until(task_spans, timeout=30, message=f"the task's span ({out.read_text()[-2000:]})")
    assert span["component"] == "worker" and span["kind"] == "CONSUMER"
