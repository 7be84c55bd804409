"""The web app driven in a real browser: headless Chromium through Selenium.

Shared by the browser tests (tests/web/test_browser.py) and the screenshot script
(tests/web/screenshots.py): finding Chromium and its driver, starting it at a screen size, and
the steps a customer takes (sign in, fill the cart, place an order, wait for its outcome).
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

DEMO_PASSWORD = "demo-pass-123"
DESKTOP = (1280, 900)
PHONE = (390, 844)
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")

# Where Debian (chromium, chromium-driver) and other distributions put the browser and driver.
_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_DRIVERS = ("chromedriver",)


@dataclass(frozen=True)
class Chromium:
    """A Chromium binary and the chromedriver that drives it."""

    binary: str
    driver: str


def find_chromium() -> Chromium | None:
    """Chromium and chromedriver from ``CHROMIUM_BINARY``/``CHROMEDRIVER`` or the PATH; None if missing."""
    binary = os.environ.get("CHROMIUM_BINARY") or next(filter(None, map(shutil.which, _BROWSERS)), None)
    driver = os.environ.get("CHROMEDRIVER") or next(filter(None, map(shutil.which, _DRIVERS)), None)
    if binary and driver and Path(binary).exists() and Path(driver).exists():
        return Chromium(binary, driver)
    return None


@contextmanager
def chromium_driver(chromium: Chromium, size: tuple[int, int] = DESKTOP) -> Iterator[webdriver.Chrome]:
    """A headless Chromium of ``size`` (CSS pixels, device pixel ratio 1), quit on exit."""
    options = webdriver.ChromeOptions()
    options.binary_location = chromium.binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        f"--window-size={size[0]},{size[1]}",
        "--lang=en-GB",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromium.driver))
    try:
        driver.set_window_size(*size)
        yield driver
    finally:
        driver.quit()


class WebApp:
    """A customer's steps in the web app, with waits on what the page shows (never on sleeps)."""

    def __init__(self, driver: webdriver.Chrome, base_url: str, timeout: float = 20) -> None:
        self.driver = driver
        self.base_url = base_url
        self.timeout = timeout

    # --- waiting and finding -----------------------------------------------------------------

    def wait(self, condition: Callable[[], Any], message: str, timeout: float | None = None) -> Any:
        """The first truthy value of ``condition()``; fails with ``message`` after the timeout."""

        def attempt(_: Any) -> Any:
            try:
                return condition()
            except StaleElementReferenceException:
                return None

        try:
            return WebDriverWait(self.driver, timeout or self.timeout, poll_frequency=0.1).until(attempt)
        except TimeoutException:
            raise AssertionError(f"timed out: {message} (at {self.driver.current_url})") from None

    def find(self, css: str) -> WebElement:
        return self.wait(lambda: self._visible(css), f"{css} to be shown")

    def _visible(self, css: str) -> WebElement | None:
        found = [e for e in self.driver.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]
        return found[0] if found else None

    def read(self, css: str, how: Callable[[WebElement], Any]) -> Any:
        """``how(element)`` of the shown element; found again if the page redrew it meanwhile."""
        return self.wait(lambda: (e := self._visible(css)) is not None and [how(e)], f"{css} to be read")[0]

    def text(self, css: str) -> str:
        return str(self.read(css, lambda e: e.text))

    def attribute(self, css: str, name: str) -> str:
        return str(self.read(css, lambda e: e.get_attribute(name) or ""))

    def click(self, css: str) -> None:
        self.read(css, lambda e: e.click() or True)

    def type(self, css: str, text: str) -> None:
        """Replace the field's value with ``text``, as typing does."""
        self.read(css, lambda e: e.clear() or e.send_keys(text) or True)

    def absent(self, css: str) -> bool:
        return self.wait(
            lambda: [not any(e.is_displayed() for e in self.driver.find_elements(By.CSS_SELECTOR, css))],
            f"{css} to be checked",
        )[0]

    # --- pages ---------------------------------------------------------------------------------

    def open(self, route: str = "/") -> None:
        self.driver.get(f"{self.base_url}/#{route}")

    def reload(self) -> None:
        self.driver.refresh()

    def sign_in(self, username: str, password: str = DEMO_PASSWORD) -> None:
        self.open("/signin")
        self.type("#username", username)
        self.type("#password", password)
        self.click("#signin-form button[type=submit]")
        self.wait(lambda: "#/shop" in self.driver.current_url, "the shop after signing in")
        self.find("#products tbody tr")

    def sign_out(self) -> None:
        self.click("#logout")
        self.find("#signin-form")

    def stock_of(self, product_id: str) -> int:
        shown = self.text(f'#products tr[data-product-id="{product_id}"] .stock')
        return 0 if shown == "Sold out" else int(shown)

    def add_to_cart(self, product_id: str, quantity: int = 1) -> None:
        self.click(f"#add-{product_id}")
        field = f"#qty-{product_id}"
        self.find(field)
        if quantity != 1:
            self.type(field, str(quantity))
            # The quantity is kept when the field loses focus (a change event), as a user's Tab does.
            self.click("#card-token")
            self.wait(
                lambda: self.attribute(field, "value") == str(quantity), "the cart to keep the quantity"
            )

    def place_order(self, token: str = "tok_ok") -> str:  # noqa: S107 - a simulator card token
        """Choose the card, place the order and return its id from the order page's address."""
        self.read("#card-token", lambda e: Select(e).select_by_value(token) or True)
        self.click("#place-order")
        self.wait(lambda: "#/orders/" in self.driver.current_url, "the order page after placing")
        self.find("#order-status")
        return self.driver.current_url.rsplit("/", 1)[-1]

    def status(self) -> str:
        return self.attribute("#order-status", "data-status")

    def wait_for_status(self, *statuses: str, timeout: float | None = None) -> str:
        """Wait on the order page until the order shows one of ``statuses`` (terminal by default)."""
        wanted = statuses or TERMINAL
        return self.wait(
            lambda: (s := self.status()) in wanted and s,
            f"order status in {wanted}, last {self.status()}",
            timeout,
        )

    def timeline(self) -> list[str]:
        return self.wait(
            lambda: [[e.text for e in self.driver.find_elements(By.CSS_SELECTOR, "#timeline li")]],
            "the timeline to be read",
        )[0]

    def console_errors(self) -> list[str]:
        """Messages the page logged as errors (scripts, CSP), except failed requests' status lines."""
        entries = self.driver.get_log("browser")
        return [
            entry["message"]
            for entry in entries
            if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]
        ]

    def full_page_screenshot(self, path: Path) -> None:
        """A PNG of the whole page: the viewport is made as tall as the page for the shot, so
        sticky and observed elements sit where they would on a screen that tall."""
        width, height = self.driver.execute_script(
            "return [document.documentElement.clientWidth, document.documentElement.scrollHeight]"
        )
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        try:
            # Two animation frames: observers and layout have caught up with the new viewport.
            self.driver.execute_async_script(
                "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(() => done()));"
            )
            shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
        finally:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        path.write_bytes(base64.b64decode(shot["data"]))
