"""``make split``: each context as its own service (docs/architecture.md "Moving a context out").

The four services run as ``make split`` runs them (``deploy/run_stack.py --split``), each as its
PostgreSQL role, against this test run's database, vhost and Redis, on free local ports (8620-8629
with ``TEST_SERVER_PORTS``). An order's saga then crosses them: placed on orders, priced from the
inventory service's catalogue over HTTP, reserved by inventory's consumer, charged by payments',
listed by the queries service. Around it, the pieces checked without processes: which tasks each
service schedules, the roles' privileges, and the 503 an unreachable service becomes.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from config import services
from tests.fixtures.stack import subprocess_env, terminate, wait_until
from tests.observability.conftest import http, json_lines, parse_metrics

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("orders", "payments", "inventory", "queries")
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}


def _run_stack_module() -> Any:
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        import run_stack
    finally:
        sys.path.remove(str(ROOT / "deploy"))
    return run_stack


# --- Without processes --------------------------------------------------------------------------


def test_each_service_schedules_only_its_own_contexts_periodic_tasks() -> None:
    from django.conf import settings

    assert settings.OMS_SERVICE == "all"  # the default: every task, as before
    schedule = settings.CELERY_BEAT_SCHEDULE
    tasks = {
        service: {e["task"] for e in services.beat_schedule(schedule, service).values()}
        for service in SERVICES
    }
    assert tasks["payments"] == {"payments.tasks.resume_payments", "payments.tasks.reconcile_payments"}
    assert tasks["inventory"] == {"inventory.tasks.expire_reservations"}
    assert tasks["queries"] == {"queries.tasks.refresh_analytics", "queries.tasks.catch_up_projections"}
    assert (
        "sagas.tasks.sweep_timeouts" in tasks["orders"] and "eventstore.tasks.prune_outbox" in tasks["orders"]
    )
    # The money audit reads every context: only where they all are.
    assert all("config.audit.tasks.audit_money" not in found for found in tasks.values())
    assert services.beat_schedule(schedule, "all") == schedule
    assert {services.task_queue(s) for s in SERVICES} == {f"oms.tasks.{s}" for s in SERVICES}
    with pytest.raises(ValueError, match="OMS_SERVICE='shipping'"):
        services.contexts_of("shipping")


def test_the_split_supervisor_runs_four_process_sets_each_as_its_own_service(
    tmp_path: Path, monkeypatch
) -> None:
    run_stack = _run_stack_module()
    monkeypatch.setenv("DATABASE_URL", "postgres://postgres@db.example:5432/oms")
    monkeypatch.setenv("PAYMENTS_SERVICE_PORT", "9082")
    specs = run_stack.split_processes(python=sys.executable, host="127.0.0.1", metrics_root=tmp_path)

    by_name = {spec.name: spec for spec in specs}
    assert sorted(by_name) == sorted(
        f"{service}-{process}" for service in SERVICES for process in ("web", "consumers", "worker")
    )
    # beat and the relay are threads of each service's worker, beat with its own schedule file
    payments_worker = by_name["payments-worker"].argv
    assert {"--with-relay", "--with-beat-thread"} <= set(payments_worker)
    assert f"--schedule-filename={ROOT / 'var' / 'celerybeat-schedule-payments'}" in payments_worker
    payments_web = by_name["payments-web"]
    assert payments_web.env["OMS_SERVICE"] == "payments"
    assert "--bind=127.0.0.1:9082" in payments_web.argv
    assert payments_web.env["DATABASE_URL"] == "postgres://oms_payments@db.example:5432/oms"
    assert by_name["orders-web"].env["PAYMENTS_SERVICE_URL"] == "http://127.0.0.1:9082"
    assert by_name["orders-web"].env["INVENTORY_SERVICE_URL"] == "http://127.0.0.1:8083"
    assert "oms.tasks.inventory" in by_name["inventory-worker"].argv
    assert by_name["queries-consumers"].argv[-2:] == ["consume", "--all"]  # --all: its own contexts
    assert len({spec.env["PROMETHEUS_MULTIPROC_DIR"] for spec in specs}) == 4


@pytest.mark.django_db(transaction=True)
def test_a_service_role_cannot_read_another_contexts_tables() -> None:
    call_command("create_service_roles", stdout=open("/dev/null", "w"))  # noqa: SIM115 - discarded output

    def as_role(service: str, sql: str) -> None:
        db = connection.settings_dict
        conninfo = psycopg.conninfo.make_conninfo(
            host=db.get("HOST") or "127.0.0.1",
            port=str(db.get("PORT") or 5432),
            user=services.role_of(service),
            dbname=db["NAME"],
        )
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql).fetchall()

    # its own tables, the event store and the migrations table: allowed
    as_role("payments", "SELECT count(*) FROM payments_payment")
    as_role("payments", "SELECT count(*) FROM event_store")
    as_role("queries", "SELECT count(*) FROM order_read_model")
    as_role("orders", "SELECT count(*) FROM saga_instance")
    as_role("inventory", "SELECT count(*) FROM django_migrations")
    # another context's: refused by PostgreSQL
    for service, table in [
        ("payments", "orders_user"),
        ("payments", "inventory_product"),
        ("orders", "inventory_product"),
        ("orders", "payments_payment"),
        ("inventory", "saga_instance"),
        ("queries", "payments_payment"),
    ]:
        with pytest.raises(
            psycopg.errors.InsufficientPrivilege, match=f"permission denied for table {table}"
        ):
            as_role(service, f"SELECT count(*) FROM {table}")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_role("inventory", "INSERT INTO django_migrations (app, name, applied) VALUES ('x', 'y', now())")


@pytest.mark.usefixtures("django_db_setup")  # the test database (subprocess_env names it), migrated
def test_create_service_roles_writes_json_lines_like_the_other_set_up_steps() -> None:
    # make split runs it between seed_demo and the supervisor: its output is log lines too.
    done = subprocess.run(
        [sys.executable, "manage.py", "create_service_roles"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = json_lines([line for line in (done.stdout + done.stderr).splitlines() if line.strip()])
    events = [line["event"] for line in lines if line["logger"] == "manage.create_service_roles"]
    assert [event.split(":")[0] for event in events] == [f"role oms_{service}" for service in SERVICES]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.django_db
def test_orders_answers_503_when_the_inventory_service_does_not_answer(alice_client, monkeypatch) -> None:
    from config.composition.remote import RemoteCatalogue, RemotePaymentHistory, RemoteService
    from orders import neighbours

    monkeypatch.setattr(neighbours, "_ports", {})
    down = f"http://127.0.0.1:{_closed_port()}"
    neighbours.use(
        catalogue=RemoteCatalogue(RemoteService("inventory", down)),
        payment_history=RemotePaymentHistory(RemoteService("payments", down)),
    )
    answer = alice_client.post(
        "/api/orders",
        {
            "items": [{"product_id": "SKU-0001", "quantity": 1}],
            "payment": {"method": "card", "token": "tok_ok"},
        },
    )
    assert answer.status_code == 503
    assert answer["Content-Type"] == "application/problem+json"
    assert answer.json()["type"] == "urn:oms:problem:service_unavailable"
    assert "inventory service" in answer.json()["detail"]


# --- The four services running ------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free local ports (from ``TEST_SERVER_PORTS`` when set), held while chosen."""
    import os

    wanted = os.environ.get("TEST_SERVER_PORTS", "")
    candidates = range(int(wanted.split("-")[0]), int(wanted.split("-")[1]) + 1) if wanted else [0] * count
    held: list[socket.socket] = []
    try:
        for port in candidates:
            probe = socket.socket()
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                probe.close()
                continue
            held.append(probe)
            if len(held) == count:
                return [int(s.getsockname()[1]) for s in held]
    finally:
        for probe in held:
            probe.close()
    raise RuntimeError(f"not {count} free ports in {wanted}")


class Split:
    """``deploy/run_stack.py --split`` with its output in a file, and the four services' base URLs."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path, ports: dict[str, int]) -> None:
        self.process = process
        self.log = log
        self.base = {service: f"http://127.0.0.1:{port}" for service, port in ports.items()}

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def call(self, service: str, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        status, body = http(method, self.base[service] + path, **kwargs)
        try:
            return status, json.loads(body) if body else None
        except ValueError:
            return status, body

    def stop(self) -> None:
        terminate(self.process)


@pytest.fixture
def split(stack_factory, demo_users, tmp_path: Path) -> Iterator[Split]:
    from inventory.public import upsert_product

    call_command("create_service_roles", stdout=open("/dev/null", "w"))  # noqa: SIM115 - discarded output
    upsert_product(product_id="SPLIT-1", name="Split", price=Decimal("10.00"), available=10)
    ports = dict(zip(SERVICES, _free_ports(len(SERVICES)), strict=True))
    env = subprocess_env(
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
        WEB_ACCESS_LOG="0",
        **{f"{service.upper()}_SERVICE_PORT": str(port) for service, port in ports.items()},
    )
    for name in ("OMS_SERVICE", *(f"{s.upper()}_SERVICE_URL" for s in SERVICES)):
        env.pop(name, None)
    log = tmp_path / "split.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "deploy" / "run_stack.py"), "--split"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Split(process, log, ports)

    def ready() -> bool:
        assert process.poll() is None, running.text()[-8000:]
        text = running.text()
        if text.count('"relay running"') < 4 or text.count('"consuming ') < 4:
            return False
        try:
            return all(running.call(service, "GET", "/health/ready")[0] == 200 for service in SERVICES)
        except OSError:
            return False

    try:
        wait_until(ready, timeout=60, interval=0.3, message="the four services up")
        yield running
    finally:
        running.stop()


def _place(split: Split, token: str, card: str, quantity: int = 1) -> str:
    body = {
        "items": [{"product_id": "SPLIT-1", "quantity": quantity}],
        "payment": {"method": "card", "token": card},
    }
    status, answer = split.call("orders", "POST", "/api/orders", token=token, body=body)
    assert status == 202, answer
    return str(answer["order_id"])


def _settled(split: Split, token: str, order_id: str, wanted: str | None = None) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        status, order = split.call("orders", "GET", f"/api/orders/{order_id}", token=token)
        assert status == 200, order
        if order["status"] in TERMINAL and (wanted is None or order["status"] == wanted):
            return dict(order)
        return None

    return dict(wait_until(done, timeout=20, interval=0.2, message=f"order {order_id} settled"))


def _available(split: Split, token: str) -> int:
    status, product = split.call("inventory", "GET", "/api/inventory/SPLIT-1", token=token)
    assert status == 200, product
    return int(product["available"])


@pytest.mark.stack
@pytest.mark.slow
def test_the_saga_crosses_four_services_each_standing_alone(split: Split) -> None:
    # a token from the orders service (it alone has the users); the others verify it
    status, tokens = split.call(
        "orders", "POST", "/api/auth/token", body={"username": "alice", "password": "demo-pass-123"}
    )
    assert status == 200, tokens
    token = tokens["access"]

    # the happy path: priced from inventory over HTTP, reserved, charged, listed by queries
    completed = _place(split, token, "tok_ok", quantity=2)
    order = _settled(split, token, completed)
    assert (order["status"], order["total_amount"]) == ("COMPLETED", "20.00")
    assert _available(split, token) == 8
    status, timeline = split.call("orders", "GET", f"/api/orders/{completed}/timeline", token=token)
    assert status == 200
    assert [step["type"] for step in timeline["payment"]][-1] == "PaymentProcessed"  # asked of payments

    def listed() -> bool:
        status, page = split.call("queries", "GET", "/api/orders", token=token)
        assert status == 200, page
        return any(row["order_id"] == completed and row["status"] == "COMPLETED" for row in page["results"])

    wait_until(listed, timeout=15, interval=0.2, message="the order on the queries service")

    # a declined card: FAILED, compensated, the stock back
    declined = _place(split, token, "tok_declined")
    order = _settled(split, token, declined)
    assert (order["status"], order["failure_reason"], order["saga"]["state"]) == (
        "FAILED",
        "PAYMENT_DECLINED",
        "COMPENSATED",
    )
    assert _available(split, token) == 8

    # a cancellation of a completed order: refunded by payments, restocked by inventory
    cancelled = _place(split, token, "tok_ok")
    _settled(split, token, cancelled, "COMPLETED")
    assert _available(split, token) == 7
    status, _ = split.call("orders", "DELETE", f"/api/orders/{cancelled}", token=token)
    assert status == 202
    order = _settled(split, token, cancelled, "CANCELLED")
    assert order["saga"]["state"] == "COMPENSATED"
    status, payment = split.call("payments", "GET", f"/api/payments/{cancelled}", token=token)
    assert (status, payment["status"], payment["refunded_amount"]) == (200, "REFUNDED", "10.00")
    wait_until(lambda: _available(split, token) == 8, timeout=10, message="the cancelled order's stock back")

    # the operator's charge on payments asks the orders service whose order it is
    status, tokens = split.call(
        "orders", "POST", "/api/auth/token", body={"username": "admin", "password": "demo-pass-123"}
    )
    admin = tokens["access"]
    charge = {"amount": "10.00", "method": "card", "token": "tok_ok"}
    unknown = {**charge, "order_id": "00000000-0000-4000-8000-000000000000"}
    status, problem = split.call("payments", "POST", "/api/payments/process", token=admin, body=unknown)
    assert (status, problem["detail"]) == (404, "No such order."), problem
    status, problem = split.call(
        "payments", "POST", "/api/payments/process", token=admin, body={**charge, "order_id": completed}
    )
    assert status == 409, problem  # found by orders, already captured by payments

    # each service mounts only its own URLs
    assert split.call("payments", "GET", "/api/orders", token=token)[0] == 404
    assert split.call("inventory", "POST", "/api/auth/token", body={"username": "alice"})[0] == 404
    assert split.call("queries", "GET", f"/api/payments/{completed}", token=token)[0] == 404
    assert split.call("orders", "GET", "/api/inventory/SPLIT-1", token=token)[0] == 404
    assert split.call("payments", "GET", f"/api/payments/{completed}", token=token)[0] == 200
    status, schema = split.call("payments", "GET", "/api/schema/?format=json")
    assert status == 200
    assert {path.split("/")[2] for path in schema["paths"] if path.startswith("/api/")} == {"payments"}
    # the internal reads want the deployment's key
    assert split.call("inventory", "GET", "/internal/inventory/catalogue?id=SPLIT-1")[0] == 403

    # /health/ready and /metrics of each service stand alone, with its own gauges only
    gauges = {
        "orders": "oms_sagas",
        "payments": "oms_payment_circuit_breaker_state",
        "queries": "oms_projection_lag_events",
    }
    for service in SERVICES:
        status, ready = split.call(service, "GET", "/health/ready")
        assert (status, ready["status"]) == (200, "ok"), (service, ready)
        status, text = http("GET", split.base[service] + "/metrics")
        assert status == 200, service
        families = parse_metrics(text.decode())
        assert "oms_outbox_backlog_messages" in families, service
        for owner, gauge in gauges.items():
            assert (gauge in families) == (owner == service), (service, gauge)
        source_up = {s.labels["source"]: s.value for s in families["oms_metrics_source_up"].samples}
        assert set(source_up.values()) == {1.0}, (service, source_up)
    # no service met a table it may not read
    assert "permission denied" not in split.text()

    # a user deactivated where the users live is refused by every service: the others ask the
    # orders service for the user's state, they do not trust the token's claims
    status, tokens = split.call(
        "orders", "POST", "/api/auth/token", body={"username": "bob", "password": "demo-pass-123"}
    )
    bob = tokens["access"]
    assert split.call("queries", "GET", "/api/orders", token=bob)[0] == 200
    from orders.models import User

    user = User.objects.get(username="bob")
    user.is_active = False
    user.save()
    for service, path in (
        ("queries", "/api/orders"),
        ("inventory", "/api/inventory/SPLIT-1"),
        ("payments", f"/api/payments/{completed}"),
        ("orders", f"/api/orders/{completed}"),
    ):
        status, problem = split.call(service, "GET", path, token=bob)
        assert (status, problem["type"]) == (401, "urn:oms:problem:user_inactive"), (service, problem)
