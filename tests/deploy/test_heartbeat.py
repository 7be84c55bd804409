"""Heartbeat files (config/heartbeat.py): the loops of the consumers, relay, Celery worker and
beat touch them, the exec probes of deploy/k8s read them.

The probe is run exactly as the pods run it (``python -I config/heartbeat.py --max-age N``);
the processes are real (``manage.py consume``/``relay_outbox``, ``celery worker``/``beat``)
against this run's PostgreSQL and RabbitMQ vhost.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from config import heartbeat
from tests.fixtures.stack import ROOT, Stack, subprocess_env, wait_until
from tests.observability.conftest import free_port


def probe(path: Path, max_age: float) -> subprocess.CompletedProcess[str]:
    """The exec probe of deploy/k8s/base, run the way the kubelet runs it."""
    return subprocess.run(
        [sys.executable, "-I", str(ROOT / "config" / "heartbeat.py"), "--max-age", str(max_age)],
        env={**os.environ, "HEARTBEAT_FILE": str(path)},
        capture_output=True,
        text=True,
        timeout=30,
    )


def _touched_again(path: Path, after: float) -> bool:
    return path.exists() and path.stat().st_mtime > after


# --- The module ---------------------------------------------------------------------------------


def test_beat_does_nothing_without_a_heartbeat_file(monkeypatch, tmp_path):
    monkeypatch.delenv("HEARTBEAT_FILE", raising=False)
    monkeypatch.setattr(heartbeat, "_last_touch", 0.0)
    assert heartbeat.beat() is False
    assert list(tmp_path.iterdir()) == []


def test_beat_touches_at_most_once_per_interval(monkeypatch, tmp_path):
    path = tmp_path / "heartbeat"
    monkeypatch.setenv("HEARTBEAT_FILE", str(path))
    monkeypatch.setenv("HEARTBEAT_INTERVAL_SECONDS", "5")
    monkeypatch.setattr(heartbeat, "_last_touch", 0.0)

    assert heartbeat.beat(now=100.0) is True
    assert path.exists()
    assert heartbeat.beat(now=104.9) is False  # within the interval: no system call
    assert heartbeat.beat(now=105.0) is True


def test_the_probe_fails_on_a_missing_or_stale_file_and_passes_on_a_fresh_one(tmp_path):
    path = tmp_path / "heartbeat"
    missing = probe(path, 30)
    assert missing.returncode == 1
    assert "no heartbeat yet" in missing.stderr

    path.touch()
    assert probe(path, 30).returncode == 0

    old = time.time() - 120
    os.utime(path, (old, old))
    stale = probe(path, 30)
    assert stale.returncode == 1
    assert "last heartbeat 120s ago" in stale.stderr


def test_the_probe_needs_a_file_to_check(tmp_path):
    result = subprocess.run(
        [sys.executable, "-I", str(ROOT / "config" / "heartbeat.py"), "--max-age", "5"],
        env={key: value for key, value in os.environ.items() if key != "HEARTBEAT_FILE"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "HEARTBEAT_FILE" in result.stderr


# --- The real loops -----------------------------------------------------------------------------


@pytest.mark.stack
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("command", ["consume", "relay_outbox"])
def test_an_idle_consumer_or_relay_keeps_its_heartbeat_fresh_and_a_stopped_one_goes_stale(
    stack_factory: Stack, tmp_path: Path, command: str
) -> None:
    # given the process running with a heartbeat file, nothing to do
    path = tmp_path / "heartbeat"
    args = ["--all"] if command == "consume" else []
    process = stack_factory.start_process(
        command, command, *args, HEARTBEAT_FILE=str(path), HEARTBEAT_INTERVAL_SECONDS="0.5"
    )

    # when it has been idle for a while, then it still touches the file and the probe passes
    stack_factory.wait_until(path.exists, message=f"{command} heartbeat")
    first = path.stat().st_mtime
    stack_factory.wait_until(lambda: _touched_again(path, first), message=f"{command} beating while idle")
    assert probe(path, 5).returncode == 0

    # when the process stops, then the heartbeat ages past the limit and the probe fails
    assert process.stop() == 0
    time.sleep(1.5)
    assert probe(path, 1).returncode == 1


@pytest.mark.stack
@pytest.mark.django_db(transaction=True)
def test_the_celery_worker_beats_and_serves_its_metrics_port(stack_factory: Stack, tmp_path: Path) -> None:
    path = tmp_path / "heartbeat"
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    metrics_port = free_port()
    env = subprocess_env(
        HEARTBEAT_FILE=str(path),
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        METRICS_PORT=str(metrics_port),
    )
    celery = str(Path(sys.executable).parent / "celery")
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [celery, "-A", "config", "worker", "-Q", "oms.tasks", "--concurrency=1", "--loglevel=INFO"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(path.exists, timeout=60, message="worker heartbeat")
        first = path.stat().st_mtime
        wait_until(lambda: _touched_again(path, first), timeout=30, message="worker beating again")
        assert probe(path, 30).returncode == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        log.close()


@pytest.mark.stack
@pytest.mark.django_db(transaction=True)
def test_celery_beat_touches_its_heartbeat_on_every_tick(stack_factory: Stack, tmp_path: Path) -> None:
    path = tmp_path / "heartbeat"
    env = subprocess_env(HEARTBEAT_FILE=str(path), HEARTBEAT_INTERVAL_SECONDS="0.5")
    celery = str(Path(sys.executable).parent / "celery")
    log = (tmp_path / "beat.log").open("wb")
    beat = subprocess.Popen(
        [celery, "-A", "config", "beat", "--loglevel=INFO", f"--schedule={tmp_path / 'beat-schedule'}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(path.exists, timeout=60, message="beat heartbeat")
        first = path.stat().st_mtime
        wait_until(lambda: _touched_again(path, first), timeout=30, message="beat ticking again")
        assert probe(path, 30).returncode == 0
    finally:
        beat.terminate()
        beat.wait(timeout=30)
        log.close()
        _purge_task_queue()


def _purge_task_queue() -> None:
    # The periodic tasks beat sent have no worker here: leave the vhost as the suite found it.
    from eventstore.topology import broker_connection

    with broker_connection() as connection:
        channel = connection.channel()
        try:
            channel.queue_purge(queue="oms.tasks")
        except connection.channel_errors:
            pass
        finally:
            try:
                channel.close()
            except (OSError, *connection.channel_errors):
                pass
