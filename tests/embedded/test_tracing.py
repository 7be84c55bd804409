"""``serve_embedded`` sets up tracing: one order is one trace, from its request through the
in-process saga (spans written to ``OTEL_SPANS_FILE``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from .server import running_server

pytestmark = [pytest.mark.embedded, pytest.mark.slow]


def test_an_order_placed_on_the_embedded_server_is_one_trace(tmp_path: Path) -> None:
    spans_file = tmp_path / "spans.jsonl"

    def spans() -> list[dict]:
        text = spans_file.read_text() if spans_file.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    with running_server(tmp_path, OTEL_SPANS_FILE=str(spans_file)) as server:
        token = server.access_token("alice")
        body = {
            "items": [{"product_id": "SKU-0001", "quantity": 1}],
            "payment": {"method": "card", "token": "tok_ok"},
        }
        reply = server.request("POST", "/api/orders", body, token=token)
        assert reply.status == 202, reply.body
        order_id = reply.json()["order_id"]
        deadline = time.monotonic() + 30
        while server.request("GET", f"/api/orders/{order_id}", token=token).json()["status"] != "COMPLETED":
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)

        # the request's server span roots the trace that the in-process saga's handlers join
        def order_trace() -> tuple[dict, list[dict]] | None:
            recorded = spans()
            posts = [s for s in recorded if s["kind"] == "SERVER" and s["name"] == "POST api/orders"]
            handled = [s for s in recorded if s["attributes"].get("oms.correlation_id") == order_id]
            if len(posts) == 1 and {s["attributes"]["oms.context"] for s in handled} >= {"sagas", "payments"}:
                return posts[0], handled
            return None

        deadline = time.monotonic() + 10
        while (found := order_trace()) is None:
            assert time.monotonic() < deadline, spans()
            time.sleep(0.1)

    post, handled = found
    assert post["component"] == "embedded"
    assert {s["trace_id"] for s in handled} == {post["trace_id"]}
    assert {s["kind"] for s in handled} == {"CONSUMER"}
