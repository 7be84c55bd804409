"""The in-process bus of the embedded mode, run for real in a subprocess (SQLite, no broker)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .embedded_env import embedded_env, run_manage_py_script

pytestmark = pytest.mark.embedded

PROBE = Path(__file__).with_name("probe_bus.py")


def run_probe(scenario: str, tmp_path: Path) -> Any:
    """Run the probe scenario in a fresh embedded process; its JSON verdict."""
    result = run_manage_py_script(PROBE, scenario, env=embedded_env(tmp_path), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("PROBE-RESULT ")]
    return json.loads(line.removeprefix("PROBE-RESULT "))


def test_dispatcher_thread_delivers_a_committed_event_exactly_once(tmp_path: Path) -> None:
    # given a probe subscription, when an event commits with the dispatcher thread running
    outcome = run_probe("thread", tmp_path)
    # then the subscriber saw it once, the inbox recorded it once, the outbox row is settled
    assert outcome["calls"] == [outcome["message_id"]]
    assert outcome["inbox_rows"] == 1
    assert outcome["outbox_sent"] is True
    assert outcome["handled_again"] is False


def test_draining_twice_delivers_once(tmp_path: Path) -> None:
    outcome = run_probe("drain-twice", tmp_path)
    # the first drain settles the one row, the second finds nothing to do
    assert outcome["settled_rounds"] == [1, 0]
    assert outcome["calls"] == [outcome["message_id"]]
    assert outcome["inbox_rows"] == 1
    assert outcome["handled_again"] is False


def test_a_failed_delivery_is_retried_and_then_has_one_effect(tmp_path: Path) -> None:
    outcome = run_probe("flaky", tmp_path)
    # the failed call rolled back its inbox row; the retry is the one that counts
    assert outcome["calls"] == [outcome["message_id"]] * 2
    assert outcome["inbox_rows"] == 1
    assert outcome["outbox_attempts"] == 1
    assert outcome["dead_letters"] == []
    assert outcome["handled_again"] is False


def test_a_message_that_keeps_failing_becomes_a_dead_letter(tmp_path: Path) -> None:
    outcome = run_probe("poison", tmp_path)
    # one first try plus one retry per configured delay (3), then parked for a person
    assert len(outcome["calls"]) == 4
    assert outcome["inbox_rows"] == 0
    assert outcome["outbox_sent"] is True
    assert outcome["dead_letters"] == ["probe"]
