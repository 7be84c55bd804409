"""The web UI: its page and assets are served, and it only talks to the public API."""

import re

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_the_page_and_its_assets_are_served() -> None:
    # when a browser opens /
    page = Client().get("/")
    # then it gets the HTML page, whose script and stylesheet are served too
    assert page.status_code == 200
    html = page.content.decode()
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert {a.rsplit(".", 1)[-1] for a in assets} == {"js", "css"}
    for asset in assets:
        response = Client().get(asset)
        assert response.status_code == 200, asset
        assert _body(response), asset


def test_the_script_calls_only_documented_endpoints() -> None:
    # given the paths the UI's script requests
    source = _body(Client().get("/static/ui/app.js")).decode()
    paths = set(re.findall(r'"(/api/[a-z/]+)', source)) | set(re.findall(r"`(/api/[a-z/]+)", source))
    # then each is part of the API contract
    assert paths == {
        "/api/auth/token",
        "/api/auth/token/refresh",
        "/api/auth/logout",
        "/api/inventory",
        "/api/orders",
        "/api/orders/",
    }


def _body(response) -> bytes:  # type: ignore[no-untyped-def]
    return b"".join(response.streaming_content) if response.streaming else response.content
