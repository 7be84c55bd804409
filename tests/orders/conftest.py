"""The orders API tests run twice: through DRF (Django's test client) and through the web
process's ASGI application, where POST /api/orders is the thin endpoint (orders/asgi.py) —
one contract, two transports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.fixtures.api import AsgiClient


@pytest.fixture(params=["drf", "asgi"])
def transport(request: pytest.FixtureRequest) -> str:
    """Which transport the clients below use."""
    return str(request.param)


def _client(transport: str, token: str | None) -> Any:
    if transport == "asgi":
        return AsgiClient(token)
    client = APIClient()
    client.default_format = "json"
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def api_client(transport: str) -> Any:
    return _client(transport, None)


@pytest.fixture
def alice_client(transport: str, token_for: Callable[[str], str]) -> Any:
    return _client(transport, token_for("alice"))


@pytest.fixture
def bob_client(transport: str, token_for: Callable[[str], str]) -> Any:
    return _client(transport, token_for("bob"))


@pytest.fixture
def admin_client(transport: str, token_for: Callable[[str], str]) -> Any:
    return _client(transport, token_for("admin"))
