"""Orders whose sagas stand where the ops console's pages need them, made over the embedded server's API.

Shared by the console's browser tests and the screenshot script. The embedded mode answers
every command in-process, so a saga is parked the way it would be in production: a compensation
step that gets no answer in time. ``tok_late`` captures only after ``PAYMENT_TIMEOUT``, and the
embedded bus runs that charge on its one dispatcher thread; an order cancelled while the charge
hangs asks for its release and its payment's outcome, and neither can be answered until the
charge returns. With the saga clocks of ``CONSOLE_SERVER_ENV`` (one try of a compensation step,
2 s) the sweep parks the saga about 2 s after the cancel, and it stays parked until the charge
returns, about ``1.5 x PAYMENT_TIMEOUT`` after it began.
"""

from __future__ import annotations

import time
from typing import Any

from tests.embedded.server import EmbeddedServer

TRACE_URL_TEMPLATE = "http://jaeger.example:16686/trace/{trace_id}"

CONSOLE_SERVER_ENV = {
    "SAGA_STEP_TIMEOUT": "2",  # compensation steps only; forward steps keep their own clocks
    "SAGA_STEP_RETRIES": "0",
    "PAYMENT_TIMEOUT": "8",  # tok_late keeps the in-process bus busy ~12 s: the saga stays parked
    "TRACE_URL_TEMPLATE": TRACE_URL_TEMPLATE,
}


def wait_for(what: str, probe: Any, timeout: float = 30) -> Any:
    """The first truthy value of ``probe()``; fails with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def place(server: EmbeddedServer, token: str, card: str, product_id: str = "SKU-0008") -> str:
    """An order of one unit of ``product_id`` paid with ``card``; its id."""
    body = {
        "items": [{"product_id": product_id, "quantity": 1}],
        "payment": {"method": "card", "token": card},
    }
    reply = server.request("POST", "/api/orders", body, token=token)
    assert reply.status == 202, reply.body
    return str(reply.json()["order_id"])


def order_of(server: EmbeddedServer, token: str, order_id: str) -> dict[str, Any]:
    reply = server.request("GET", f"/api/orders/{order_id}", token=token)
    assert reply.status == 200, reply.body
    return dict(reply.json())


def failed_order(server: EmbeddedServer) -> str:
    """alice's order paid with a declined card, waited until it is FAILED (stock released)."""
    alice = server.access_token("alice")
    order_id = place(server, alice, "tok_declined")
    wait_for(
        "the declined order to fail",
        lambda: order_of(server, alice, order_id)["status"] == "FAILED",
    )
    return order_id


def parked_order(server: EmbeddedServer) -> str:
    """alice's ``tok_late`` order, cancelled while its charge hangs, waited until its saga is parked.

    It keeps the embedded bus busy for ``1.5 x PAYMENT_TIMEOUT``: make the other orders first.
    """
    alice = server.access_token("alice")
    order_id = place(server, alice, "tok_late")
    # the charge is running once the payment exists (a cancel before it would stop the charge)
    wait_for(
        "the payment to start",
        lambda: server.request("GET", f"/api/payments/{order_id}", token=alice).status == 200,
    )
    reply = server.request("DELETE", f"/api/orders/{order_id}", token=alice)
    assert reply.status == 202, reply.body
    wait_for(
        "the saga to be parked",
        lambda: order_of(server, alice, order_id)["saga"]["needs_attention"],
        timeout=15,
    )
    return order_id
