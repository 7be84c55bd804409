"""The embedded server's output (``make run``): JSON lines only, an order's journey, no copies.

A real ``serve_embedded`` process with ``DEBUG`` on, as ``make run`` starts it: Django's own
handlers would print a 4xx a second time, in plain text and without the caller.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from .server import running_server

pytestmark = [pytest.mark.embedded, pytest.mark.slow]


def test_the_embedded_server_writes_json_lines_and_an_order_id_finds_its_journey(tmp_path: Path) -> None:
    with running_server(tmp_path, DEBUG="true") as server:
        token = server.access_token("alice")
        missing = str(uuid.uuid4())
        assert server.request("GET", f"/api/orders/{missing}", token=token).status == 404
        body = {
            "items": [{"product_id": "SKU-0001", "quantity": 1}],
            "payment": {"method": "card", "token": "tok_ok"},
        }
        placed = server.request("POST", "/api/orders", body, token=token)
        assert placed.status == 202, placed.body
        order_id = placed.json()["order_id"]
        deadline = time.monotonic() + 30
        while '"order completed"' not in server.log():
            assert time.monotonic() < deadline, server.log()[-4000:]
            time.sleep(0.1)
    output = server.log()

    lines: list[dict[str, Any]] = []
    for number, text in enumerate(output.splitlines(), start=1):
        try:
            lines.append(json.loads(text))
        except ValueError:
            pytest.fail(f"line {number} is not JSON: {text!r}")
    assert all({"timestamp", "level", "logger", "event", "process"} <= line.keys() for line in lines)
    # runserver's banner is among them, as lines of the one configuration
    assert any(line["event"].startswith("Starting development server at") for line in lines)

    # the 4xx: one line, with the caller and the order asked for
    [warning] = [line for line in lines if missing in json.dumps(line)]
    assert (warning["level"], warning["logger"]) == ("WARNING", "django.request")
    assert (warning["user_id"], warning["correlation_id"]) == ("alice", missing)

    ours = [line for line in lines if line.get("correlation_id") == order_id]
    assert [line["event"] for line in ours] == [
        "order created",
        "saga transitioned",
        "saga transitioned",
        "order status updated",
        "order status updated",
        "saga transitioned",
        "saga transitioned",
        "order completed",
    ]
    assert {line["user_id"] for line in ours} == {"alice"}
    traces = {line["trace_id"] for line in ours}
    assert len(traces) == 1 and None not in traces, traces
