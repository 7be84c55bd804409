"""The web UI: its page and assets are served, the CSP allows them, and it only calls the API."""

import posixpath
import re
import uuid
from pathlib import Path

import pytest
from django.test import Client
from django.urls import Resolver404, ResolverMatch, resolve

pytestmark = pytest.mark.django_db

UI = Path(__file__).resolve().parents[2] / "static" / "ui"
# What would turn a string into markup or code in the page.
HTML_SINKS = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function")


def test_the_page_and_its_assets_are_served() -> None:
    # when a browser opens /
    page = Client().get("/")
    # then it gets the HTML page, whose script, stylesheet and icon are served too
    assert page.status_code == 200
    html = page.content.decode()
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert {a.rsplit(".", 1)[-1] for a in assets} == {"js", "css", "svg"}
    for asset in assets:
        response = Client().get(asset)
        assert response.status_code == 200, asset
        assert _body(response), asset
    # the icon is declared, so browsers do not ask for a missing /favicon.ico
    assert re.search(r'<link rel="icon" href="/static/ui/favicon.svg"', html)


def test_every_module_the_script_imports_is_served_as_javascript() -> None:
    # given every import of every module, from app.js on
    seen: set[str] = set()
    pending = ["app.js"]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        response = Client().get(f"/static/ui/{name}")
        # then each is served with a JavaScript type (browsers refuse modules served otherwise)
        assert response.status_code == 200, name
        assert "javascript" in response["Content-Type"], (name, response["Content-Type"])
        for target in re.findall(r'from "(\.[^"]+)"', _body(response).decode()):
            pending.append(posixpath.normpath(posixpath.join(posixpath.dirname(name), target)))
    assert {"app.js", "api.js", "router.js", "views/order.js"} <= seen
    assert seen == {str(p.relative_to(UI)) for p in UI.rglob("*.js")}, "a module nothing imports"


def test_the_page_keeps_a_strict_content_security_policy() -> None:
    policy = Client().get("/")["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    assert directives["script-src"].split()[0] == "'self'" and "unsafe" not in policy
    assert directives["connect-src"] == "'self'"
    # no inline script or style in the page itself
    html = Client().get("/").content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html) and "<style" not in html and " style=" not in html


def test_the_scripts_call_only_api_routes_that_exist() -> None:
    # given every API path the modules request (a ${...} part stands for an order id, or a
    # dead letter's number)
    calls = set()
    for module in UI.rglob("*.js"):
        source = module.read_text()
        calls |= set(re.findall(r'["`](/api/[^"`?]*)', source))
    assert calls
    for call in sorted(calls):
        # then each resolves to an API view of the URL conf
        match = _resolved(re.sub(r"\$\{[^}]+\}", str(uuid.uuid4()), call)) or _resolved(
            re.sub(r"\$\{[^}]+\}", "1", call)
        )
        if match is None:
            pytest.fail(f"the web app calls {call}, which no route serves")
        assert match.route.startswith("api/"), call
    assert {
        "/api/auth/token",
        "/api/auth/token/refresh",
        "/api/auth/logout",
        "/api/inventory",
        "/api/orders",
        "/api/orders/${orderId}",
        "/api/orders/${orderId}/timeline",
        "/api/payments/${orderId}",
        "/api/admin/summary",
        "/api/admin/sagas",
        "/api/admin/orders/${orderId}",
        "/api/admin/sagas/${orderId}/retry-step",
        "/api/admin/sagas/${orderId}/force-compensation",
        "/api/admin/sagas/${orderId}/mark-failed",
        "/api/admin/dead-letters/${letter.id}/replay",
    } <= calls


def test_no_module_builds_elements_from_html_strings() -> None:
    # data from the API (names, error texts, message bodies) must never be parsed as HTML
    for module in UI.rglob("*.js"):
        source = module.read_text()
        for sink in HTML_SINKS:
            assert sink not in source, (module.name, sink)


def _resolved(path: str) -> ResolverMatch | None:
    """The route serving ``path``; None for none but the catch-all that answers unknown URLs 404."""
    try:
        match = resolve(path)
    except Resolver404:
        return None
    return None if match.url_name == "api-not-found" else match


def _body(response) -> bytes:  # type: ignore[no-untyped-def]
    return b"".join(response.streaming_content) if response.streaming else response.content
