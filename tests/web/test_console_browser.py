"""The ops console pages in a real browser (issue 13): headless Chromium against an embedded server.

As admin: the front page, a failed order's console with its compensation, the refusal of an
action that does not apply, and "retry step" on a parked saga, confirmed and recorded as an
event naming the admin. A customer gets no console. The server runs with the saga clocks of
``console_orders.CONSOLE_SERVER_ENV`` so that a saga can be parked within seconds.
"""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from tests.embedded.server import EmbeddedServer

from .browser import PHONE, WebApp, chromium_driver, find_chromium
from .console_orders import CONSOLE_SERVER_ENV, TRACE_URL_TEMPLATE, failed_order, parked_order

pytestmark = [pytest.mark.embedded, pytest.mark.browser, pytest.mark.slow]

SERVER_ENV = CONSOLE_SERVER_ENV
CHROMIUM = find_chromium()


@pytest.fixture(scope="module")
def failed(server: EmbeddedServer) -> str:
    """An order FAILED by a declined card (its saga compensated: the stock was released)."""
    return failed_order(server)


@pytest.fixture(scope="module")
def parked(server: EmbeddedServer, failed: str) -> str:
    """A cancelled order whose saga is parked; made after ``failed``, as it holds the in-process bus."""
    return parked_order(server)


def open_console(app: WebApp, order_id: str) -> None:
    app.open(f"/console/orders/{order_id}")
    app.find("#console-overview")


def test_a_customer_gets_no_console(app: WebApp, failed: str) -> None:
    app.sign_in("alice")
    # no way there from the navigation or from the customer's own order page
    assert app.absent('#nav a[href="#/console"]')
    app.open(f"/orders/{failed}")
    app.find("#order-status")
    assert app.absent("#open-console")
    # and typing the address says it is not allowed (not "not found")
    for route in ("/console", f"/console/orders/{failed}"):
        app.open(route)
        app.reload()
        assert app.text("#not-allowed h1") == "Not allowed"
        assert app.absent("#console-overview")


def test_admin_sees_a_failed_orders_compensation_and_a_refused_action(app: WebApp, failed: str) -> None:
    app.sign_in("admin")
    # the front page: readings and the sagas that failed in the last hour
    app.click('#nav a[href="#/console"]')
    for card in ("#summary-lag", "#summary-breaker", "#summary-dead-letters", "#summary-outbox"):
        app.find(card)
    assert "closed" in app.text("#summary-breaker")
    app.click("#tab-failed")
    app.click(f"#console-{failed}")
    app.find("#console-overview")
    assert failed in app.driver.current_url
    # the compensation: the release of the stock, answered
    compensation = app.text("#compensation")
    assert "compensating: PAYMENT_DECLINED" in compensation
    assert (
        "put the items back in stock — ReleaseInventory, attempt 1: done (InventoryReleased)" in compensation
    )
    assert "COMPENSATED" in app.text("#transitions")
    assert app.attribute("#saga-state", "data-state") == "COMPENSATED"
    # the payment and the ledger's view agree: declined, nothing captured
    assert app.attribute("#reconciliation", "data-verdict") == "agrees"
    assert "DECLINED" in app.text("#ledger-facts")
    assert "declined" in app.text("#payment-attempts")
    # the causation tree: the release was caused by the payment's failure
    released = app.driver.find_elements(
        By.CSS_SELECTOR, '#causation-tree [data-type="PaymentFailed"] + ul [data-type="ReleaseInventory"]'
    )
    assert released, app.text("#causation-tree")
    types = [
        e.get_attribute("data-type")
        for e in app.driver.find_elements(By.CSS_SELECTOR, "#console-timeline li")
    ]
    assert types[0] == "OrderCreated" and {"PaymentFailed", "InventoryReleased", "OrderFailed"} <= set(types)
    # the trace: its id, linked through TRACE_URL_TEMPLATE
    trace_id = app.text("#trace code")
    assert app.attribute("#trace-link", "href") == TRACE_URL_TEMPLATE.replace("{trace_id}", trace_id)
    # an action that does not apply is refused, with the reason in plain words
    app.click("#action-retry-step")
    assert "Send the current step's command(s) again?" in app.text("#confirm-action-text")
    app.click("#confirm-action")
    assert app.text("#action-result") == "Retry step was refused: a COMPENSATED saga has no step to retry."
    # the admin's view of the order links to its console
    app.click("#customer-view")
    app.click("#open-console")
    app.find("#console-overview")


def test_admin_retries_the_step_of_a_parked_saga(app: WebApp, parked: str) -> None:
    app.sign_in("admin")
    app.open("/console?which=attention")
    app.click(f"#console-{parked}")
    assert "Parked: the step RELEASE_INVENTORY went unanswered" in app.text("#parked")
    # asked first; "no" changes nothing
    app.click("#action-retry-step")
    app.click("#cancel-action")
    app.find("#action-retry-step")
    assert app.absent('#console-timeline li[data-type="SagaStepRetried"]')
    # confirmed: recorded as an event naming the admin
    app.click("#action-retry-step")
    app.click("#confirm-action")
    assert app.text("#action-result").startswith("Retry step: recorded SagaStepRetried naming admin.")
    retried = app.text('#console-timeline li[data-type="SagaStepRetried"]')
    assert "by admin" in retried
    app.click('#console-timeline li[data-type="SagaStepRetried"] summary')
    assert '"admin": "admin"' in app.text('#console-timeline li[data-type="SagaStepRetried"] pre')
    assert app.absent("#parked")


def test_on_a_phone_the_console_fits_the_screen(server: EmbeddedServer, failed: str) -> None:
    assert CHROMIUM is not None
    with chromium_driver(CHROMIUM, PHONE) as driver:
        app = WebApp(driver, server.base_url)
        app.sign_in("admin")
        for route, shown in (("/console", "#sagas"), (f"/console/orders/{failed}", "#console-timeline")):
            app.open(route)
            app.find(shown)
            overflow = driver.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, route
        # a table's row is a card whose cells are labelled by their column
        label, display = driver.execute_script(
            "const cell = document.querySelector('#transitions tbody td');"
            "return [getComputedStyle(cell, '::before').content, getComputedStyle(cell).display]"
        )
        assert (label, display) == ('"At"', "block")
