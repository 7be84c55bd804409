"""The shop when the intake is at its bound on orders in progress (orders/admission.py).

Its own server: one order in progress is the bound, a placement waits 1 s for room, and the
first order's ``tok_slow`` card keeps it in progress for at least ``PAYMENT_TIMEOUT`` (its bank
answers after that, so the payment asks the gateway's ledger).
"""

from __future__ import annotations

import pytest

from .browser import WebApp

pytestmark = [pytest.mark.embedded, pytest.mark.browser, pytest.mark.slow]

SERVER_ENV = {"ORDER_INTAKE_MAX_OPEN": "1", "ORDER_INTAKE_HOLD_SECONDS": "1", "PAYMENT_TIMEOUT": "5"}


def test_an_order_refused_while_too_many_are_in_progress_says_so_and_when_to_retry(app: WebApp) -> None:
    app.sign_in("alice")
    app.add_to_cart("SKU-0003")
    first = app.place_order("tok_slow")  # in progress for PAYMENT_TIMEOUT at least
    app.click('#nav a[href="#/shop"]')
    app.add_to_cart("SKU-0004")
    app.click("#place-order")
    assert app.text("#order-error") == (
        "The order was not placed: Too many orders are in progress right now. Try again in 1 s."
    )
    assert "#/shop" in app.driver.current_url  # the cart is still there to retry
    # Once the first order is settled there is room again.
    app.open(f"/orders/{first}")
    app.wait_for_status()
    app.click('#nav a[href="#/shop"]')
    if app.absent("#qty-SKU-0004"):
        app.add_to_cart("SKU-0004")
    app.place_order("tok_ok")
    assert app.wait_for_status() == "COMPLETED"
