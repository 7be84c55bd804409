"""The stack's real output: every line is one JSON object, and an order id finds its journey.

``deploy/run_stack.py`` runs as ``make stack`` runs it (web on gunicorn with uvicorn workers,
consumers, the Celery worker with beat and the relay as its threads), against this test run's
database, vhost and Redis; its stdout is read as an operator would read it: ``grep <order id>``,
then jq.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.stack import subprocess_env, terminate, wait_until
from tests.observability.conftest import free_port, http, json_lines
from tests.observability.test_stack import order_status

ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}


class StackOutput:
    """``deploy/run_stack.py`` with its stdout in a file."""

    def __init__(self, path: Path, process: subprocess.Popen[bytes]) -> None:
        self.path = path
        self.process = process

    def text(self) -> str:
        return self.path.read_text(errors="replace")

    def grep(self, needle: str) -> list[dict[str, Any]]:
        """The lines containing ``needle`` (as ``grep`` finds them), parsed, in time order.

        Each process's lines reach the output in their order; lines of two processes are
        relayed by two threads, so they are put in the order of their timestamps (stably).
        """
        found = [json.loads(line) for line in self.text().splitlines() if needle in line]
        return sorted(found, key=lambda line: line["timestamp"])

    def has(self, needle: str, **fields: object) -> bool:
        return any(all(line.get(k) == v for k, v in fields.items()) for line in self.grep(needle))

    def stop(self) -> int:
        return terminate(self.process)


@pytest.fixture
def stack_output(stack_factory, tmp_path):
    """The whole stack running (its supervisor's output in a file), as `make stack` starts it."""
    port = free_port()
    metrics = tmp_path / "prometheus"
    env = subprocess_env(
        PORT=str(port),
        WEB_CONCURRENCY="1",
        PROMETHEUS_MULTIPROC_DIR=str(metrics),
        # Request lines too: they must be JSON like the rest.
        WEB_ACCESS_LOG="1",
    )
    path = tmp_path / "stack.log"
    with path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "deploy" / "run_stack.py")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    output = StackOutput(path, process)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, output.text()[-6000:]
        try:
            live = http("GET", f"{base}/health/live")[0] == 200
        except OSError:
            return False
        return live and '"consuming ' in output.text() and '"relay running"' in output.text()

    try:
        wait_until(ready, timeout=90, interval=0.3, message="the stack up")
        output.base = base  # type: ignore[attr-defined]
        yield output
    finally:
        output.stop()


def journey(lines: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """An order's lifecycle lines: (event, the status or saga state it reached)."""
    return [
        (line["event"], line.get("status") or line.get("to_state") or "")
        for line in lines
        if line["logger"] in ("orders.handlers", "sagas.handlers")
    ]


@pytest.mark.stack
def test_every_line_of_the_stack_is_json_and_an_order_id_finds_its_journey(stack_output, token_for):
    from inventory.public import upsert_product

    upsert_product(product_id="LOG-1", name="Logged", price=Decimal("3.00"), available=5)
    token = token_for("alice")
    base = stack_output.base

    # given two orders over HTTP: one that completes, one whose card is declined
    def place(card: str) -> str:
        line = {"product_id": "LOG-1", "quantity": 1}
        body = {"items": [line], "payment": {"method": "card", "token": card}}
        status, answer = http("POST", f"{base}/api/orders", token=token, body=body)
        assert status == 202, answer
        return json.loads(answer)["order_id"]

    completed, declined = place("tok_ok"), place("tok_declined")
    # and a request for an order that does not exist (a 4xx under a valid token)
    missing = str(uuid.uuid4())
    assert http("GET", f"{base}/api/orders/{missing}", token=token)[0] == 404

    # when their sagas end, and their last lines are written
    wait_until(
        lambda: order_status(completed) in TERMINAL and order_status(declined) in TERMINAL,
        timeout=60,
        message="both orders terminal",
    )
    wait_until(
        lambda: (
            stack_output.has(completed, event="order completed")
            and stack_output.has(declined, event="order failed")
        ),
        timeout=30,
        message="the last lifecycle lines written",
    )
    assert stack_output.stop() == 0

    # then every line of every process parses as one JSON object with the common fields
    lines = json_lines(stack_output.text().splitlines())
    processes = {line["process"] for line in lines}
    # (two consumer processes by default: the saga's, consumers-1, and every other context's;
    # beat and the relay are threads of the worker, and log as it)
    assert processes == {"stack", "web", "consumers-1", "consumers-2", "worker"}, processes
    hosted = {(line["logger"], line["event"]) for line in lines if line["process"] == "worker"}
    assert {("celery.beat", "beat: Starting..."), ("eventstore.relay", "relay running")} <= hosted
    # nothing printed past the logging configuration (the supervisor wraps such a line as
    # logger "stdout"): the note Celery writes from its signal handler when it stops is JSON
    # of its own (config/celery_app.py), as it must be where no supervisor wraps it
    printed = {line["event"] for line in lines if line["logger"] == "stdout"}
    assert printed == set(), printed
    assert any(
        line["logger"] == "celery.apps.worker" and line["event"] == "worker: Warm shutdown (MainProcess)"
        for line in lines
    )
    # every Python process froze its start-up objects once its code was loaded (config/heap.py)
    settled = [line for line in lines if line["event"] == "garbage collector settled"]
    assert {line["process"] for line in settled} == processes - {"stack"}, settled
    assert all(line["frozen_objects"] > 10_000 for line in settled), settled
    # the web server's request lines are among them (WEB_ACCESS_LOG=1)
    assert any(line["logger"] == "uvicorn.access" and "/api/orders" in line["event"] for line in lines)

    # and grep <order id> finds the whole journey, in order, each step once
    ok = stack_output.grep(completed)
    assert journey(ok) == [
        ("order created", "PENDING"),
        ("saga transitioned", "INVENTORY_RESERVED"),
        ("saga transitioned", "PAYMENT_PROCESSING"),
        ("order status updated", "INVENTORY_RESERVED"),
        ("order status updated", "PAYMENT_PROCESSING"),
        ("saga transitioned", "PAYMENT_PROCESSING"),
        ("saga transitioned", "COMPLETED"),
        ("order completed", "COMPLETED"),
    ], ok
    steps = [line for line in ok if line["logger"] in ("orders.handlers", "sagas.handlers")]
    assert [line["reason"] for line in steps if line["event"] == "saga transitioned"] == [
        "inventory reserved",
        "payment requested",
        "payment captured",
        "inventory confirmed",
    ]
    assert steps[0]["process"] == "web" and {line["process"] for line in steps[1:]} == {"consumers-1"}
    # each with the order, the caller who placed it, and one trace from the request on
    assert {line["correlation_id"] for line in steps} == {completed}
    assert {line["user_id"] for line in steps} == {"alice"}
    traces = {line["trace_id"] for line in steps}
    assert len(traces) == 1 and None not in traces, traces

    failed = stack_output.grep(declined)
    assert [step for step in journey(failed) if step[0] != "order status updated"] == [
        ("order created", "PENDING"),
        ("saga transitioned", "INVENTORY_RESERVED"),
        ("saga transitioned", "PAYMENT_PROCESSING"),
        ("saga transitioned", "COMPENSATING"),
        ("saga transitioned", "COMPENSATED"),
        ("order failed", "FAILED"),
    ], failed
    [failure] = [line for line in failed if line["event"] == "order failed"]
    assert failure["reason"] == "PAYMENT_DECLINED" and failure["user_id"] == "alice"
    assert failure["correlation_id"] == declined and failure["trace_id"]

    # the 4xx is one warning, naming the caller and the order asked for (no plain copy)
    [warning] = [line for line in stack_output.grep(missing) if line["level"] == "WARNING"]
    assert warning["logger"] == "django.request" and warning["process"] == "web"
    assert warning["user_id"] == "alice" and warning["correlation_id"] == missing
    assert warning["trace_id"]
