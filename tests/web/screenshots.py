"""Screenshots of the web app's main pages, desktop and phone, into docs/screenshots/.

``make screenshots`` (or ``python -m tests.web.screenshots [folder]``) starts an embedded
server on a fresh SQLite file, drives headless Chromium through the same steps as the browser
tests (tests/web/browser.py) and saves one PNG per page and screen size. The server runs with
the console tests' settings (tests/web/console_orders.py), so the ops console shows a parked saga.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.embedded.embedded_env import ROOT
from tests.embedded.server import running_server

from .browser import DESKTOP, PHONE, WebApp, chromium_driver, find_chromium
from .console_orders import CONSOLE_SERVER_ENV, parked_order

SIZES = {"desktop": DESKTOP, "phone": PHONE}


def shooter(app: WebApp, folder: Path, size: str, shots: list[Path]) -> Callable[[str], None]:
    """``shoot(page)``: a full-page PNG of what the browser shows, added to ``shots``."""

    def shoot(page: str) -> None:
        path = folder / f"{page}-{size}.png"
        app.driver.execute_script("window.scrollTo(0, 0); document.activeElement?.blur()")
        app.full_page_screenshot(path)
        shots.append(path)

    return shoot


def take(app: WebApp, folder: Path, size: str) -> tuple[list[Path], str]:
    """Sign in, place orders (one completed, one declined, one cancelled) and shoot each page;
    returns the shots and the declined order's id."""
    shots: list[Path] = []
    shoot = shooter(app, folder, size, shots)

    app.open("/signin")
    app.find("#signin-form")
    shoot("signin")
    app.sign_in("alice")
    app.add_to_cart("SKU-0007")
    declined = app.place_order("tok_declined")
    app.wait_for_status()
    app.open("/shop")
    app.add_to_cart("SKU-0003")
    app.place_order("tok_ok")
    app.wait_for_status()
    app.click("#cancel-order")
    app.click("#confirm-cancel")
    app.wait_for_status("CANCELLED")
    app.open("/shop")
    app.add_to_cart("SKU-0001", 2)
    app.add_to_cart("SKU-0004")
    order_id = app.place_order("tok_flaky")
    app.wait_for_status()
    shoot("order")
    app.open("/shop")
    app.add_to_cart("SKU-0002", 3)
    app.add_to_cart("SKU-0010")
    shoot("shop")
    app.open("/orders")
    app.find(f'#orders tr[data-order-id="{order_id}"]')
    shoot("orders")
    app.sign_out()
    return shots, declined


def take_console(app: WebApp, folder: Path, size: str, failed: str) -> list[Path]:
    """As admin, shoot the ops console's front page and the console page of the order ``failed``."""
    shots: list[Path] = []
    shoot = shooter(app, folder, size, shots)
    app.sign_in("admin")
    app.open("/console")
    app.find("#summary-lag")
    app.find(f'#sagas tr[data-order-id="{failed}"]')
    shoot("console")
    app.open(f"/console/orders/{failed}")
    app.find("#console-timeline")
    shoot("console-order")
    app.sign_out()
    return shots


def main(folder: Path) -> int:
    chromium = find_chromium()
    if chromium is None:
        print(
            "Chromium and chromedriver are needed: apt-get install chromium chromium-driver", file=sys.stderr
        )
        return 2
    folder.mkdir(parents=True, exist_ok=True)
    port = int(os.environ.get("BROWSER_TEST_PORT", "0")) or None
    with (
        tempfile.TemporaryDirectory() as data,
        running_server(Path(data), port=port, **CONSOLE_SERVER_ENV) as server,
    ):
        shots: list[Path] = []
        for size, dimensions in SIZES.items():
            with chromium_driver(chromium, dimensions) as driver:
                taken, failed = take(WebApp(driver, server.base_url), folder, size)
                shots += taken
        # Last: the parked saga's charge holds the in-process bus for a while (console_orders.py).
        parked_order(server)
        for size, dimensions in SIZES.items():
            with chromium_driver(chromium, dimensions) as driver:
                shots += take_console(WebApp(driver, server.base_url), folder, size, failed)
    for path in shots:
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"))
