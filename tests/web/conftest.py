"""Fixtures of the browser tests: one embedded server and one headless Chromium per module.

A module sets ``SERVER_ENV`` (a dict of settings for its server, e.g. shorter saga clocks) when
its scenarios need them. Skipped only when Chromium or chromedriver cannot be found outside
CI; in CI (``CI=true``) that is a failure, as ``.ci/run`` installs them (Debian's ``chromium``
and ``chromium-driver``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.embedded.server import EmbeddedServer, running_server

from .browser import DESKTOP, WebApp, chromium_driver, find_chromium

CHROMIUM = find_chromium()


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedServer]:
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "CI: Chromium and chromedriver are required (apt-get install chromium chromium-driver)"
            )
        pytest.skip("Chromium or chromedriver not found (apt-get install chromium chromium-driver)")
    port = int(os.environ.get("BROWSER_TEST_PORT", "0")) or None
    env = {"API_THROTTLE_LOGIN": "off", **getattr(request.module, "SERVER_ENV", {})}
    with running_server(tmp_path_factory.mktemp("browser"), port=port, **env) as embedded:
        yield embedded


@pytest.fixture(scope="module")
def browser(server: EmbeddedServer) -> Iterator[WebApp]:
    assert CHROMIUM is not None
    with chromium_driver(CHROMIUM, DESKTOP) as driver:
        yield WebApp(driver, server.base_url)


@pytest.fixture
def app(browser: WebApp) -> Iterator[WebApp]:
    """The browser signed out at the start of a test, with no script or CSP error at its end."""
    browser.open("/signin")
    browser.driver.execute_script("sessionStorage.clear()")
    browser.console_errors()  # drop what earlier tests logged
    yield browser
    assert browser.console_errors() == []
