"""Tracing set-up: the relay's periodic poll is never a trace of its own; beat traces its sends."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, ParentBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from config.telemetry import QuietPolls
from tests.fixtures.stack import subprocess_env

ROOT = Path(__file__).resolve().parents[2]
RELAY_POLL = "eventstore.tasks.relay_outbox"


def decision(name: str, *, parent_sampled: bool | None = None) -> Decision:
    parent = None
    if parent_sampled is not None:
        flags = TraceFlags(TraceFlags.SAMPLED if parent_sampled else TraceFlags.DEFAULT)
        context = SpanContext(trace_id=7, span_id=9, is_remote=True, trace_flags=flags)
        parent = trace.set_span_in_context(NonRecordingSpan(context))
    return QuietPolls(ParentBased(ALWAYS_ON)).should_sample(parent, 7, name).decision


def test_the_relay_poll_is_dropped_as_a_root_and_everything_else_sampled():
    # the poll beat sends and the worker runs: never a root
    assert decision(f"apply_async/{RELAY_POLL}") == Decision.DROP
    assert decision(f"run/{RELAY_POLL}") == Decision.DROP
    # the run of a dropped send is dropped with it (parent-based)
    assert decision(f"run/{RELAY_POLL}", parent_sampled=False) == Decision.DROP
    # other periodic tasks, and a poll inside a sampled trace, are sampled as before
    assert decision("apply_async/sagas.tasks.sweep_timeouts") == Decision.RECORD_AND_SAMPLE
    assert decision("run/sagas.tasks.sweep_timeouts") == Decision.RECORD_AND_SAMPLE
    assert decision(f"run/{RELAY_POLL}", parent_sampled=True) == Decision.RECORD_AND_SAMPLE


@pytest.mark.django_db(transaction=True)
def test_beat_traces_its_sends_except_the_relay_poll(tmp_path):
    from eventstore.topology import broker_connection

    spans_file = tmp_path / "spans.jsonl"
    log_path = tmp_path / "beat.log"
    with log_path.open("wb") as log:
        beat = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "celery"),
                "-A",
                "config",
                "beat",
                "--loglevel=INFO",
                f"--schedule={tmp_path / 'beat-schedule'}",
            ],
            cwd=ROOT,
            env=subprocess_env(OTEL_SPANS_FILE=str(spans_file)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        # until beat has sent the relay poll (every 5 s) and other tasks
        deadline = time.monotonic() + 30
        while "Sending due task relay-outbox-safety-net" not in log_path.read_text():
            assert beat.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        beat.terminate()
        beat.wait(timeout=20)
        with broker_connection() as connection:  # what beat sent must not reach another test's worker
            channel = connection.channel()
            channel.queue_purge("oms.tasks")
            channel.close()

    spans = [json.loads(line) for line in spans_file.read_text().splitlines() if line.strip()]
    names = {span["name"] for span in spans}
    assert "apply_async/sagas.tasks.sweep_timeouts" in names
    assert {span["component"] for span in spans} == {"beat"}
    assert {span["kind"] for span in spans} == {"PRODUCER"}
    assert f"apply_async/{RELAY_POLL}" not in names


UNSAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_a_message_of_an_unsampled_trace_is_published_without_a_span(monkeypatch):
    from eventstore import tracing

    started: list[str] = []
    real_start = tracing.tracer.start_span

    def start_span(name, *args, **kwargs):
        started.append(name)
        return real_start(name, *args, **kwargs)

    monkeypatch.setattr(tracing.tracer, "start_span", start_span)
    headers = {"traceparent": UNSAMPLED, "baggage": "oms.user_id=42"}
    span, carried = tracing.start_publish_span(routing_key="x", message_id="m", headers=headers)
    tracing.end_publish_span(span)
    assert started == [] and carried == headers and not span.is_recording()
    # a sampled trace, no trace at all or a malformed traceparent: a span as before
    zero_trace = "00-" + "0" * 32 + "-b7ad6b7169203331-00"
    for traceparent in (SAMPLED, None, UNSAMPLED.upper(), UNSAMPLED[:-1], zero_trace):
        headers = {} if traceparent is None else {"traceparent": traceparent}
        tracing.start_publish_span(routing_key="x", message_id="m", headers=headers)
    assert len(started) == 5
