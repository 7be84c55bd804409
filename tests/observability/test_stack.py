"""Across real processes: one order is one trace, and /metrics sums every process of the unit.

The relay and the consumers run as subprocesses (tests/fixtures/stack.py). The trace test
keeps the HTTP side in this process, instrumented by the Django instrumentation with an
in-memory span exporter; the subprocesses export their spans to a JSON-lines file
(``OTEL_SPANS_FILE``). The metrics test runs gunicorn with two (ASGI) workers as well, all
writing to one ``PROMETHEUS_MULTIPROC_DIR``, and scrapes it over HTTP.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.observability.conftest import http, parse_metrics, sample_value

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}

_exporter = InMemorySpanExporter()
_provider: TracerProvider | None = None


def in_memory_provider() -> TracerProvider:
    """This process's tracer provider, exporting to memory (OTel allows one global provider)."""
    global _provider
    if _provider is None:
        _provider = TracerProvider()
        _provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(_provider)
    _exporter.clear()
    return _provider


@pytest.fixture
def traced_django():
    """The Django instrumentation on, for the requests of this test only."""
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    DjangoInstrumentor().instrument(tracer_provider=in_memory_provider())
    try:
        yield _exporter
    finally:
        DjangoInstrumentor().uninstrument()


def order_status(order_id: str) -> str:
    from orders.handlers import load_order

    return load_order(order_id).status


def read_spans(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.stack
def test_one_order_is_one_connected_trace_from_http_through_relay_to_every_consumer(
    stack_factory, traced_django, alice_client, tmp_path
):
    from eventstore.models import StoredEvent
    from inventory.public import upsert_product

    spans_file = tmp_path / "spans.jsonl"
    stack_factory.consumer = stack_factory.start_consumer(OTEL_SPANS_FILE=str(spans_file))
    stack_factory.relay = stack_factory.start_relay(OTEL_SPANS_FILE=str(spans_file))
    upsert_product(product_id="TRACE-1", name="Traced", price=Decimal("7.50"), available=5)

    # given one order placed over HTTP
    response = alice_client.post(
        "/api/orders",
        {
            "items": [{"product_id": "TRACE-1", "quantity": 2}],
            "payment": {"method": "card", "token": "tok_ok"},
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    order_id = response.json()["order_id"]

    # when its saga runs to the end through RabbitMQ
    stack_factory.wait_until(
        lambda: order_status(order_id) == "COMPLETED", timeout=40, message="order completed"
    )
    http_spans = [s for s in _exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert len(http_spans) == 1, [s.name for s in http_spans]
    http = http_spans[0]
    trace_id = format(http.context.trace_id, "032x")
    assert http.parent is None
    http_span_id = format(http.context.span_id, "016x")

    snapshot: list[dict] = []

    def settled() -> bool:
        # a span is written when it ends, so a child (a SELECT) can be on file before the
        # handler span around it: wait for the last step and for every parent to be written.
        # Spans keep coming after that (the read side, the relay's sweeps), so the checks
        # below read this one settled snapshot, not the file again.
        snapshot[:] = read_spans(spans_file)
        ours = [s for s in snapshot if s["trace_id"] == trace_id]
        known = {http_span_id} | {s["span_id"] for s in ours}
        return any(s["name"] == "sagas handle InventoryConfirmed" for s in ours) and all(
            s["parent_span_id"] in known for s in ours
        )

    stack_factory.wait_until(settled, timeout=40, message="every span of the trace written, parents included")

    # then the HTTP server span roots one trace that every other span joins
    spans = snapshot
    ours = [s for s in spans if s["trace_id"] == trace_id]
    consumer_spans = [s for s in spans if s["kind"] == "CONSUMER"]
    order_consumer_spans = [
        s for s in consumer_spans if s["attributes"].get("oms.correlation_id") == order_id
    ]
    assert order_consumer_spans and all(s["trace_id"] == trace_id for s in order_consumer_spans)

    handled = {s["name"] for s in order_consumer_spans}
    assert {
        "inventory handle ReserveInventory",
        "sagas handle InventoryReserved",
        "payments handle ProcessPayment",
        "sagas handle PaymentProcessed",
        "inventory handle ConfirmInventory",
        "sagas handle InventoryConfirmed",
    } <= handled

    # connected: each span's parent is the HTTP span or another span of the trace, and
    # every consumer span's parent is a relay publish span
    known = {http_span_id} | {s["span_id"] for s in ours}
    assert all(s["parent_span_id"] in known for s in ours), [
        s["name"] for s in ours if s["parent_span_id"] not in known
    ]
    publishes = {s["span_id"]: s for s in ours if s["kind"] == "PRODUCER"}
    assert publishes and all(p["component"] == "relay" for p in publishes.values())
    assert all(s["parent_span_id"] in publishes for s in order_consumer_spans)
    assert {s["component"] for s in ours} >= {"relay", "consumer"}

    # and the trace id is stored with every event of the order's saga
    stored = set(StoredEvent.objects.filter(correlation_id=order_id).values_list("trace_id", flat=True))
    assert stored == {trace_id}


@pytest.mark.stack
def test_metrics_sum_every_process_and_counters_move_on_created_completed_failed(
    stack_factory, gunicorn_unit, token_for
):
    from inventory.public import upsert_product

    upsert_product(product_id="MET-OK", name="Counted", price=Decimal("4.00"), available=50)
    upsert_product(product_id="MET-NONE", name="Sold out", price=Decimal("4.00"), available=0)
    token = token_for("alice")

    # given four orders over HTTP, served by either gunicorn worker
    def place(product: str, card: str) -> str:
        body = {
            "items": [{"product_id": product, "quantity": 1}],
            "payment": {"method": "card", "token": card},
        }
        status, answer = http("POST", f"{gunicorn_unit}/api/orders", token=token, body=body)
        assert status == 202, answer
        return json.loads(answer)["order_id"]

    orders = [place("MET-OK", "tok_ok"), place("MET-OK", "tok_ok"), place("MET-OK", "tok_declined")]
    orders.append(place("MET-NONE", "tok_ok"))

    # when their sagas end in the consumer process
    stack_factory.wait_until(
        lambda: all(order_status(o) in TERMINAL for o in orders), timeout=30, message="terminal"
    )
    assert [order_status(o) for o in orders] == ["COMPLETED", "COMPLETED", "FAILED", "FAILED"]

    # then every scrape, whichever worker answers, shows the sum over all processes
    for _ in range(4):
        status, text = http("GET", f"{gunicorn_unit}/metrics")
        assert status == 200
        families = parse_metrics(text.decode())
        assert sample_value(families, "oms_orders_created_total") == 4
        assert sample_value(families, "oms_orders_completed_total") == 2
        assert sample_value(families, "oms_orders_failed_total", reason="PAYMENT_DECLINED") == 1
        assert sample_value(families, "oms_orders_failed_total", reason="OUT_OF_STOCK") == 1
        assert sample_value(families, "oms_orders_cancelled_total") == 0
        assert sample_value(families, "oms_payment_outcomes_total", outcome="captured") == 2
        assert sample_value(families, "oms_payment_outcomes_total", outcome="PAYMENT_DECLINED") == 1
        assert sample_value(families, "oms_payment_attempts_total", outcome="captured") == 2
        assert sample_value(families, "oms_saga_duration_seconds_count", state="COMPLETED") == 2
        assert sample_value(families, "oms_consumer_messages_handled_total", context="payments") >= 3
        assert sample_value(families, "oms_relay_messages_published_total") >= 4
        assert (
            sample_value(families, "django_http_responses_total_by_status_view_method_total", status="202")
            == 4
        )
        assert sample_value(families, "oms_db_connections_open") >= 0
