"""A client generated from the OpenAPI schema drives the whole order flow (issue 12).

The schema is read from a running embedded server (``/api/schema/``), openapi-python-client
generates a client package from it (cached under ``var/test-clients/`` by the schema's hash),
and the flow runs through that package only: token, place, poll, list, cancel, a refund as
the ADMIN, and the problem documents of a refused request. The client raises on any status
the schema does not declare (``raise_on_unexpected_status``), and parses every body into the
models the schema describes, so an undocumented status, a missing enum value or a body that
does not match its schema fails here.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.embedded.embedded_env import ROOT
from tests.embedded.server import DEMO_PASSWORD, EmbeddedServer, running_server

pytestmark = [pytest.mark.embedded, pytest.mark.slow]

PACKAGE = "oms_client"
CACHE = ROOT / "var" / "test-clients"
TERMINAL = {"COMPLETED", "CANCELLED", "FAILED"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    with running_server(tmp_path_factory.mktemp("generated-client")) as embedded:
        yield embedded


@pytest.fixture(scope="module")
def client_package(server: EmbeddedServer) -> ModuleType:
    """The package openapi-python-client generates from the server's own schema."""
    reply = server.request("GET", "/api/schema/?format=json")
    assert reply.status == 200, reply.body
    folder = generated_client(reply.body)
    sys.path.insert(0, str(folder))
    try:
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
            del sys.modules[name]
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))


def generated_client(schema: bytes) -> Path:
    """The folder holding the generated package for ``schema`` (generated once per schema)."""
    folder = CACHE / hashlib.sha256(schema).hexdigest()[:16]
    if (folder / PACKAGE / "__init__.py").exists():
        return folder
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
        work = Path(scratch)
        (work / "schema.json").write_bytes(schema)
        (work / "config.json").write_text(
            json.dumps({"project_name_override": PACKAGE, "package_name_override": PACKAGE, "post_hooks": []})
        )
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "openapi_python_client",
                "generate",
                "--path",
                str(work / "schema.json"),
                "--config",
                str(work / "config.json"),
                "--meta",
                "none",
                "--output-path",
                str(work / "out" / PACKAGE),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        # Every operation and model made it: a warning means a piece was left out.
        assert "Warning" not in result.stdout, result.stdout
        try:
            os.replace(work / "out", folder)  # atomic: a concurrent run sees all or nothing
        except OSError:
            if not (folder / PACKAGE / "__init__.py").exists():
                raise
    return folder


def test_the_order_flow_through_the_generated_client(server: EmbeddedServer, client_package: ModuleType):
    api = _Api(client_package, server.base_url)
    alice = api.login("alice")
    admin = api.login("admin")
    models = api.models

    # place: 202 with the order's Location
    placed = api.call(
        "orders",
        "orders_place",
        client=alice,
        body=models.PlaceOrderInputRequest(
            items=[models.OrderLineInputRequest(product_id="SKU-0001", quantity=2)],
            payment=models.PaymentInputRequest(method=models.MethodEnum.CARD, token="tok_ok"),
        ),
        idempotency_key=f"flow-{uuid.uuid4()}",
    )
    assert placed.status_code == 202
    accepted = placed.parsed
    assert isinstance(accepted, models.OrderAccepted)
    assert accepted.status == models.OrderStatusEnum.PENDING
    assert placed.headers["Location"] == f"/api/orders/{accepted.order_id}"

    # poll until the saga completed it
    order = _until(
        lambda: api.call("orders", "orders_retrieve", accepted.order_id, client=alice).parsed,
        lambda found: found.status.value in TERMINAL,
    )
    assert isinstance(order, models.OrderOutput)
    assert order.status == models.OrderStatusEnum.COMPLETED, order
    assert order.saga.state == models.SagaStateEnum.COMPLETED
    assert [(line.product_id, line.quantity) for line in order.items] == [("SKU-0001", 2)]
    payment = api.call("payments", "payments_retrieve", str(accepted.order_id), client=alice).parsed
    assert payment.status == models.PaymentStatusEnum.CAPTURED
    assert payment.captures == 1

    # list: the read model shows it (eventually consistent)
    page = _until(
        lambda: api.call("queries", "orders_list", client=alice).parsed,
        lambda listed: accepted.order_id in {row.order_id for row in listed.results},
    )
    assert isinstance(page, models.OrderPageOutput)
    listed = next(row for row in page.results if row.order_id == accepted.order_id)
    assert listed.status == models.OrderStatusEnum.COMPLETED
    assert listed.customer_id == "alice"

    # cancel another order: the saga compensates, the order ends CANCELLED
    second = api.call(
        "orders",
        "orders_place",
        client=alice,
        body=models.PlaceOrderInputRequest(
            items=[models.OrderLineInputRequest(product_id="SKU-0002", quantity=1)],
            payment=models.PaymentInputRequest(method=models.MethodEnum.CARD, token="tok_ok"),
        ),
    ).parsed
    cancelled = api.call("orders", "orders_cancel", second.order_id, client=alice)
    assert cancelled.status_code == 202
    assert isinstance(cancelled.parsed, models.OrderAccepted)
    # (it may complete before the cancellation is handled, and is then compensated: it shows
    # COMPLETED until it is CANCELLED, so wait for the end of the cancellation, not any end)
    ended = _until(
        lambda: api.call("orders", "orders_retrieve", second.order_id, client=alice).parsed,
        lambda found: found.status.value in {"CANCELLED", "FAILED"},
    )
    assert ended.status == models.OrderStatusEnum.CANCELLED, ended

    # refund part of the first order's payment, as the ADMIN
    refunded = api.call(
        "payments",
        "payments_refund",
        client=admin,
        body=models.RefundPaymentRequestRequest(order_id=accepted.order_id, amount="1.00", reason="goodwill"),
    )
    assert refunded.status_code == 200, refunded.content
    assert refunded.parsed.status == models.PaymentStatusEnum.PARTIALLY_REFUNDED
    assert refunded.parsed.refunded_amount == "1.00"


def test_refusals_are_problem_documents_the_client_parses(server: EmbeddedServer, client_package: ModuleType):
    api = _Api(client_package, server.base_url)
    alice, bob = api.login("alice"), api.login("bob")
    models = api.models
    placed = api.call(
        "orders",
        "orders_place",
        client=alice,
        body=models.PlaceOrderInputRequest(
            items=[models.OrderLineInputRequest(product_id="SKU-0003", quantity=1)],
            payment=models.PaymentInputRequest(method=models.MethodEnum.CARD, token="tok_ok"),
        ),
    ).parsed

    hidden = api.call("orders", "orders_retrieve", placed.order_id, client=bob)
    forbidden = api.call(
        "orders",
        "orders_change_status",
        placed.order_id,
        client=alice,
        body=models.ChangeStatusInputRequest(status=models.OrderStatusEnum.FAILED),
    )
    unknown = api.call(
        "orders",
        "orders_place",
        client=alice,
        body=models.PlaceOrderInputRequest(
            items=[models.OrderLineInputRequest(product_id="NO-SUCH-SKU", quantity=1)],
            payment=models.PaymentInputRequest(method=models.MethodEnum.CARD, token="tok_ok"),
        ),
    )
    bad_token = api.call("queries", "orders_list", client=api.with_a_bad_token())

    for response, status in ((hidden, 404), (forbidden, 403), (unknown, 400), (bad_token, 401)):
        assert response.status_code == status, response.content
        assert response.headers["Content-Type"] == "application/problem+json"
        assert isinstance(response.parsed, models.Problem)
        assert response.parsed.status == status
        assert response.parsed.type_.startswith("urn:oms:problem:")
    assert [error.pointer for error in unknown.parsed.errors] == ["/items/0/product_id"]
    assert bad_token.headers["WWW-Authenticate"].startswith("Bearer")


class _Api:
    """The generated package, used as a client application would use it."""

    def __init__(self, package: ModuleType, base_url: str) -> None:
        self.package = package
        self.base_url = base_url
        self.models = importlib.import_module(f"{PACKAGE}.models")

    def login(self, username: str) -> Any:
        obtain = importlib.import_module(f"{PACKAGE}.api.auth.auth_token_obtain")
        public = self.package.Client(base_url=self.base_url, raise_on_unexpected_status=True)
        pair = obtain.sync(
            client=public,
            body=self.models.CredentialsDocRequest(username=username, password=DEMO_PASSWORD),
        )
        assert isinstance(pair, self.models.TokenPair), pair
        return self.package.AuthenticatedClient(
            base_url=self.base_url, token=pair.access, raise_on_unexpected_status=True
        )

    def with_a_bad_token(self) -> Any:
        """A client whose token is not one (the server must answer 401, as documented)."""
        return self.package.AuthenticatedClient(
            base_url=self.base_url, token="not-a-token", raise_on_unexpected_status=True
        )

    def call(self, tag: str, operation: str, *args: Any, **kwargs: Any) -> Any:
        module = importlib.import_module(f"{PACKAGE}.api.{tag}.{operation}")
        return module.sync_detailed(*args, **kwargs)


def _until(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 60.0) -> Any:
    """Poll ``read`` until ``done`` says so; the last value otherwise (the caller's asserts explain)."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.2)
        value = read()
    return value


def teardown_module() -> None:
    """Keep the cache small: only the clients of the last few schemas."""
    if CACHE.exists():
        kept = sorted(CACHE.iterdir(), key=lambda path: path.stat().st_mtime, reverse=True)
        for stale in kept[5:]:
            shutil.rmtree(stale, ignore_errors=True)
