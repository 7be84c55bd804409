"""The web app in a real browser (issue 13): headless Chromium against an embedded server.

One server and one browser for the module (tests/web/conftest.py); each test signs in afresh.
"""

from __future__ import annotations

import pytest

from tests.embedded.server import EmbeddedServer

from .browser import PHONE, WebApp, chromium_driver, find_chromium

pytestmark = [pytest.mark.embedded, pytest.mark.browser, pytest.mark.slow]

CHROMIUM = find_chromium()
# The fixtures server, browser and app are in conftest.py.


def test_sign_in_place_an_order_see_it_complete_and_find_it_after_a_reload(app: WebApp) -> None:
    app.sign_in("alice")
    # a customer never sees the admin's customer id field
    assert app.absent("#customer-id")
    before = app.stock_of("SKU-0001")
    app.add_to_cart("SKU-0001", 2)
    order_id = app.place_order("tok_ok")
    assert app.wait_for_status() == "COMPLETED"
    assert "was paid" in app.text("#order-outcome")
    timeline = "\n".join(app.timeline())
    for entry in ("Order placed", "Reserve the items", "Charge attempt 1", "Paid", "Confirm the items"):
        assert entry in timeline, timeline
    # the stock shown in the shop follows the order
    app.click('#nav a[href="#/shop"]')
    app.wait(lambda: app.stock_of("SKU-0001") == before - 2, "the stock to drop by 2")
    # my orders: the order is there, and still there after a reload, filter included
    app.open("/orders?status=COMPLETED")
    app.reload()
    app.find(f'#orders tr[data-order-id="{order_id}"]')
    assert app.attribute("#status-filter", "value") == "COMPLETED"
    app.click(f"#open-{order_id}")
    app.wait(lambda: order_id in app.driver.current_url, "the order page from my orders")
    assert app.status() == "COMPLETED"


def test_a_declined_card_shows_the_reason_in_plain_words(app: WebApp) -> None:
    app.sign_in("alice")
    app.add_to_cart("SKU-0002")
    app.place_order("tok_declined")
    assert app.wait_for_status() == "FAILED"
    assert "The card was declined" in app.text("#order-outcome")
    assert "the card was declined" in "\n".join(app.timeline())
    assert app.absent("#cancel-order")


# Records when each request of the page starts and when its response arrives (window.__reads).
_RECORD_READS = """
window.__reads = [];
const original = window.fetch;
window.fetch = async (input, init) => {
  const entry = { url: String(input.url || input), started: performance.now(), ended: null };
  window.__reads.push(entry);
  try { return await original.call(window, input, init); } finally { entry.ended = performance.now(); }
};
"""


def test_the_order_page_reads_its_timeline_after_the_order_so_a_settled_order_shows_what_settled_it(
    app: WebApp,
) -> None:
    """Read side by side, a timeline read a moment before the order's last change missed the step
    that made it (a FAILED order without its declined payment: seen in CI), and the page stops
    following a settled order. Each timeline read must start once its order read has answered."""
    app.sign_in("alice")
    app.add_to_cart("SKU-0002")
    app.driver.execute_script(_RECORD_READS)
    order_id = app.place_order("tok_declined")
    app.wait_for_status()

    reads = app.driver.execute_script("return window.__reads")
    orders = [r for r in reads if r["url"].endswith(f"/api/orders/{order_id}")]
    timelines = [r for r in reads if r["url"].endswith(f"/api/orders/{order_id}/timeline")]
    assert orders and timelines
    for timeline in timelines:
        before = [order for order in orders if order["started"] <= timeline["started"]]
        assert before and before[-1]["ended"] is not None and before[-1]["ended"] <= timeline["started"], (
            reads
        )


def test_cancelling_a_completed_order_refunds_it_and_restocks(app: WebApp) -> None:
    app.sign_in("bob")
    before = app.stock_of("SKU-0003")
    app.add_to_cart("SKU-0003", 3)
    app.place_order("tok_ok")
    app.wait_for_status("COMPLETED")
    app.click("#cancel-order")
    app.click("#confirm-cancel")
    assert app.wait_for_status("CANCELLED") == "CANCELLED"
    assert "refunded" in app.text("#order-outcome")
    assert any("Refunded" in entry for entry in app.timeline())
    app.open("/shop")
    app.wait(lambda: app.stock_of("SKU-0003") == before, "the stock to come back after the cancel")


def test_a_refused_line_is_shown_once_on_the_line_the_user_typed(app: WebApp) -> None:
    app.sign_in("alice")
    app.add_to_cart("SKU-0004")
    app.add_to_cart("SKU-0005", 5000)
    app.click("#place-order")
    assert app.text("#qty-SKU-0005-error") == "Ensure this value is less than or equal to 1000."
    assert app.absent("#qty-SKU-0004-error")
    assert app.attribute("#qty-SKU-0005", "aria-invalid") == "true"
    assert app.text("#order-error").count("Ensure") == 0
    assert "#/shop" in app.driver.current_url


def test_signed_out_the_page_asks_to_sign_in_and_hides_the_navigation(app: WebApp) -> None:
    app.open("/orders")
    app.find("#signin-form")
    assert app.absent("#nav")
    app.type("#username", "alice")
    app.type("#password", "wrong-password")
    app.click("#signin-form button[type=submit]")
    assert app.text("#signin-error") == "The user name or password is wrong."
    # the right password goes on to the page that was asked for
    app.type("#password", "demo-pass-123")
    app.click("#signin-form button[type=submit]")
    app.find("#orders")
    assert app.driver.current_url.endswith("#/orders")


def test_on_a_phone_the_shop_fits_the_screen(server: EmbeddedServer) -> None:
    assert CHROMIUM is not None
    with chromium_driver(CHROMIUM, PHONE) as driver:
        app = WebApp(driver, server.base_url)
        app.sign_in("bob")
        app.add_to_cart("SKU-0006")
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        assert app.find("#place-order").is_displayed()
