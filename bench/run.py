"""``make bench``: the throughput benchmark (issues 7 and 11), from a fresh clone to a report.

Steps: ensure the local services; drop and recreate a dedicated database and RabbitMQ vhost
(their names must contain "bench"); migrate, declare the topology, seed the demo users and give
the demo products huge stock; start the stack (deploy/run_stack.py) with throttling off; get a
token; record the PostgreSQL settings in force (the bench changes none; a run with
``synchronous_commit`` or ``fsync`` off fails); warm up, then place ``BENCH_IDLE_ORDERS`` (30)
orders one at a time on the **idle** stack (OrderCreated → OrderCompleted of each); then, for
each **load shape** of ``BENCH_SHAPES`` (``spread,hot``):

- **spread**: every order for one of the 20 demo products, in turn;
- **hot**: every order for the same product (a flash sale: one stock row for every order).

1. **accepted**: wrk drives ``POST /api/orders`` at fixed concurrency (``BENCH_CONNECTIONS``,
   64) for ``BENCH_SECONDS`` (30): orders/s answered 2xx, P50/P95/P99, every non-2xx an error;
   resident memory and CPU of each stack process are sampled meanwhile; then the run drains
   and every order it created must reach a terminal saga state (lost/stuck check);
2. **end to end, sustained**: wrk with a think time per connection offers about
   ``BENCH_E2E_RATE`` orders/s (500) for ``BENCH_E2E_SECONDS`` (60 in a full run; equal to
   ``BENCH_SECONDS`` when that is below 30, for a quick run), then drains: completed orders/s
   inside the load window and 202→COMPLETED times (OrderCreated → OrderCompleted timestamps),
   and where the backlog sat (each work queue's depth and the open sagas by step, every 2 s);
3. the shape's **cost per completed order** from PostgreSQL's own counters (``pg_stat_database``
   and ``pg_stat_user_tables`` deltas over the shape: commits, rows inserted/updated/deleted,
   table scans, and statements when ``pg_stat_statements`` is loaded);
4. ``manage.py audit_money`` on every order so far: a discrepancy fails the run (exit 1).

Then the stack is stopped; **pgbench** runs the create-order transaction
(bench/pgbench_create_order.sql) on a scratch copy of the schema, and the **eventsourcing
peer** (bench/peer_eventsourcing.py) saves aggregates in-process, each for ``BENCH_SECONDS``;
the ratios are printed. JSON and Markdown go to bench/results/ (timestamped, plus latest.json /
latest.md).

Orders of a phase are told apart by their payment token (``tok_bench_<phase>_…``), which the
saga row keeps until the payment step is over and the gateway's ledger keeps from the charge on
(the stock is ample, so every order reaches the charge): "lost" compares wrk's 2xx count with
the saga rows of that phase.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import stats  # noqa: E402 - after the path fix above

PYTHON = sys.executable
RESULTS = ROOT / "bench" / "results"
LOGS = ROOT / "var" / "bench"
TERMINAL = ("COMPLETED", "COMPENSATED", "FAILED")
PRODUCTS = [f"SKU-{n:04d}" for n in range(1, 21)]
HUGE_STOCK = 50_000_000


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


class Config:
    """Everything a run is parameterised by, read from the environment."""

    def __init__(self) -> None:
        self.database_url = (
            os.environ.get("BENCH_DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/oms_bench"
        )
        self.broker_url = os.environ.get("BENCH_BROKER_URL") or "amqp://guest:guest@127.0.0.1:5672/oms_bench"
        self.redis_url = os.environ.get("BENCH_REDIS_URL") or "redis://127.0.0.1:6379/12"
        self.port = env_int("BENCH_PORT", 8500)
        self.seconds = env_float("BENCH_SECONDS", 30)
        self.connections = env_int("BENCH_CONNECTIONS", 64)
        self.wrk_threads = env_int("BENCH_WRK_THREADS", 2)
        self.e2e_seconds = env_float("BENCH_E2E_SECONDS", stats.default_e2e_seconds(self.seconds))
        self.shapes = stats.parse_shapes(os.environ.get("BENCH_SHAPES") or "spread,hot")
        self.e2e_rate = env_float("BENCH_E2E_RATE", 500)
        self.e2e_connections = env_int("BENCH_E2E_CONNECTIONS", 32)
        self.pgbench_clients = [int(c) for c in (os.environ.get("BENCH_PGBENCH_CLIENTS") or "16").split(",")]
        self.stall_seconds = env_float("BENCH_STALL_SECONDS", 60)
        self.drain_max_seconds = env_float("BENCH_DRAIN_MAX_SECONDS", 600)
        self.idle_orders = env_int("BENCH_IDLE_ORDERS", 30)
        self.web_workers = os.environ.get("WEB_CONCURRENCY") or "2"
        self.password = os.environ.get("DEMO_PASSWORD") or "demo-pass-123"
        for url in (self.database_url, self.broker_url):
            if "bench" not in url.rsplit("/", 1)[-1]:
                raise SystemExit(
                    f"refusing to recreate {url!r}: a bench database/vhost name must contain 'bench'"
                )

    @property
    def database(self) -> str:
        return unquote(urlsplit(self.database_url).path.lstrip("/"))

    @property
    def vhost(self) -> str:
        return unquote(urlsplit(self.broker_url).path.lstrip("/")) or "/"

    def stack_env(self) -> dict[str, str]:
        """The environment of the stack's processes and of manage.py."""
        env = dict(os.environ)
        # Only the stack's processes share a metrics directory (run_stack.py sets it up).
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "BROKER_URL": self.broker_url,
                "REDIS_URL": self.redis_url,
                "DJANGO_SETTINGS_MODULE": "config.settings.local",
                # local.py defaults DEBUG on, which records every query: not what production runs.
                "DEBUG": "0",
                "PORT": str(self.port),
                "WEB_CONCURRENCY": self.web_workers,
                "API_THROTTLE_USER": "off",
                "API_THROTTLE_ANON": "off",
                "API_THROTTLE_LOGIN": "off",
                "DEMO_PASSWORD": self.password,
            }
        )
        return env


def log(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def run(
    argv: list[str], *, env: dict[str, str] | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, env=env, check=True, text=True, **kwargs)


def conninfo(url: str, database: str | None = None) -> str:
    parts = urlsplit(url)
    if database is not None:
        parts = parts._replace(path=f"/{database}")
    return parts._replace(scheme="postgresql").geturl()


def recreate_database(url: str, name: str) -> None:
    """Drop (forcibly) and create database ``name`` on the server of ``url``."""
    with psycopg.connect(conninfo(url, "postgres"), autocommit=True) as db:
        db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def recreate_vhost(vhost: str) -> None:
    """A clean vhost: no message of an earlier run is left in its queues."""
    if vhost == "/":
        raise SystemExit("refusing to recreate the default vhost")
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, check=False)
    run(["rabbitmqctl", "-q", "add_vhost", vhost], capture_output=True)
    run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], capture_output=True)


SEED_SCRIPT = f"""
from inventory import public
for product in public.catalogue({PRODUCTS!r}).values():
    public.upsert_product(product_id=product.product_id, name=product.name, price=product.price,
                          available={HUGE_STOCK})
print("stock raised on", len({PRODUCTS!r}), "products")
"""


def prepare(cfg: Config) -> None:
    """Services, a fresh database and vhost, schema, topology, users and generous stock."""
    env = cfg.stack_env()
    run(["bash", "deploy/ensure_services.sh"], env=env)
    recreate_database(cfg.database_url, cfg.database)
    recreate_vhost(cfg.vhost)
    manage = [PYTHON, "manage.py"]
    run([*manage, "migrate", "--noinput", "-v", "0"], env=env)
    run([*manage, "declare_topology"], env=env, capture_output=True)
    run([*manage, "seed_demo"], env=env, capture_output=True)
    run([*manage, "shell", "-c", SEED_SCRIPT], env=env)


def stack_setting(cfg: Config, name: str) -> str:
    """A Django setting as the stack's processes read it (their environment, else its default)."""
    script = f"from django.conf import settings; print(settings.{name})"
    argv = [PYTHON, "manage.py", "shell", "-v", "0", "-c", script]
    shell = run(argv, env=cfg.stack_env(), capture_output=True)
    return shell.stdout.strip().splitlines()[-1]


class Stack:
    """deploy/run_stack.py as a child process, its output in var/bench/stack.log."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = LOGS / "stack.log"

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [PYTHON, str(ROOT / "deploy" / "run_stack.py")],
            cwd=ROOT,
            env={**self.cfg.stack_env(), "PROMETHEUS_MULTIPROC_DIR": str(LOGS / "prometheus-multiproc")},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the stack exited with {self.process.returncode}: see {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.cfg.port}/health/ready", timeout=2) as r:
                    if r.status == 200:
                        # Consumers and the relay connect in parallel; give them a moment.
                        time.sleep(3)
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise SystemExit(f"the stack was not ready within 90 s: see {self.log_path}")

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._log.close()
        return code


def token(cfg: Config) -> str:
    body = json.dumps({"username": "alice", "password": cfg.password}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{cfg.port}/api/auth/token",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own http URL
        return str(json.load(response)["access"])


def wrk(
    cfg: Config,
    *,
    phase: str,
    seconds: float,
    connections: int,
    access: str,
    delay_ms: float = 0,
    shape: str = "spread",
) -> dict[str, Any]:
    """One wrk run of bench/create_order.lua; the parsed summary."""
    env = dict(os.environ)
    env.update(
        {
            "BENCH_TOKEN": access,
            "BENCH_PRODUCTS": ",".join(stats.shape_products(shape, PRODUCTS)),
            "BENCH_PHASE": phase,
            "BENCH_DELAY_MS": f"{delay_ms:.3f}",
        }
    )
    argv = [
        "wrk",
        f"--threads={min(cfg.wrk_threads, connections)}",
        f"--connections={connections}",
        f"--duration={max(round(seconds), 1)}s",
        "--timeout=10s",
        f"--script={ROOT / 'bench' / 'create_order.lua'}",
        f"http://127.0.0.1:{cfg.port}/api/orders",
    ]
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    (LOGS / f"wrk-{phase}.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"wrk failed ({result.returncode}): {result.stderr.strip()}")
    summary = stats.parse_wrk_json(result.stdout)
    summary["connections"] = connections
    return summary


# --- Processes: memory and CPU -----------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, str, int]]:
    """pid → (parent pid, command line, utime+stime ticks) of every readable process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), cmdline, int(fields[11]) + int(fields[12]))
    return table


def process_name(cmdline: str, parent_cmdline: str) -> str:
    """A short label for a stack process from its command line."""
    if "run_stack.py" in cmdline:
        return "supervisor"
    if "gunicorn" in cmdline:
        return "web worker" if "gunicorn" in parent_cmdline else "web master"
    if "celery" in cmdline and " beat" in cmdline:
        return "beat"
    if "celery" in cmdline and " worker" in cmdline:
        return "celery worker (child)" if "celery" in parent_cmdline else "celery worker"
    if " consume " in cmdline:
        return "consume " + cmdline.split(" consume ", 1)[1].strip()
    if "relay_outbox" in cmdline:
        return "relay"
    return cmdline[:40]


def stack_processes(root_pid: int) -> list[dict[str, Any]]:
    """Every process under ``root_pid`` with its label, RSS and CPU ticks so far."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        if pid not in table:
            continue
        ppid, cmdline, ticks = table[pid]
        try:
            rss = stats.rss_kib(Path(f"/proc/{pid}/status").read_text())
        except OSError:
            rss = None
        try:
            pss = stats.pss_kib(Path(f"/proc/{pid}/smaps_rollup").read_text())
        except OSError:  # not readable (another user's process, an older kernel): RSS only
            pss = None
        if rss is not None:
            parent_cmd = table.get(ppid, (0, "", 0))[1]
            name = process_name(cmdline, parent_cmd)
            found.append({"pid": pid, "name": name, "rss_kib": rss, "pss_kib": pss, "ticks": ticks})
        todo.extend(children.get(pid, []))
    return sorted(found, key=lambda p: (p["name"], p["pid"]))


def intake_counters(cfg: Config) -> dict[str, float] | None:
    """:func:`stats.intake_counters` of the stack's ``/metrics`` now (None when it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{cfg.port}/metrics", timeout=10) as response:
            return stats.intake_counters(response.read().decode())
    except (urllib.error.URLError, OSError):
        return None


def machine_ticks() -> tuple[int, int] | None:
    """:func:`stats.cpu_ticks` of this machine now (None where there is no /proc/stat)."""
    try:
        return stats.cpu_ticks(Path("/proc/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def cpu_shares(
    before: list[dict[str, Any]], after: list[dict[str, Any]], seconds: float
) -> list[dict[str, Any]]:
    """CPU used by each process between two samples, in % of one core."""
    hz = os.sysconf("SC_CLK_TCK")
    start = {p["pid"]: p["ticks"] for p in before}
    return [
        {
            "name": p["name"],
            "pid": p["pid"],
            "cpu_percent": round(100 * (p["ticks"] - start[p["pid"]]) / hz / seconds, 1),
        }
        for p in after
        if p["pid"] in start
    ]


# --- Orders in the database ----------------------------------------------------------------


# A saga row of the phase: its token while the saga may still pay (cleared after), or the token
# the gateway's ledger recorded for the order's charge.
_OF_PHASE = (
    "(s.payment_token LIKE %s OR EXISTS (SELECT 1 FROM payments_gateway_charge g "
    "WHERE g.idempotency_key = 'order-' || s.order_id AND g.token LIKE %s))"
)


def phase_orders(cfg: Config, phase: str) -> dict[str, Any]:
    """Counts and 202→COMPLETED times of the orders whose payment token carries ``phase``."""
    prefix = f"tok_bench_{phase}_%"
    of_phase = [prefix, prefix]
    with psycopg.connect(conninfo(cfg.database_url)) as db:
        counts = dict(
            db.execute(
                f"SELECT s.state, count(*) FROM saga_instance s WHERE {_OF_PHASE} GROUP BY s.state",
                of_phase,
            ).fetchall()
        )
        rows = db.execute(
            f"""
            SELECT extract(epoch FROM c.timestamp), extract(epoch FROM d.timestamp)
            FROM saga_instance s
            JOIN event_store c ON c.aggregate_id = s.order_id AND c.event_type = 'OrderCreated'
            LEFT JOIN event_store d ON d.aggregate_id = s.order_id AND d.event_type = 'OrderCompleted'
            WHERE {_OF_PHASE}
            """,
            of_phase,
        ).fetchall()
        # The query side counts too: a completed order its read model does not show is not done.
        read_model_completed = db.execute(
            f"""
            SELECT count(DISTINCT r.order_id) FROM order_read_model r
            JOIN saga_instance s ON s.order_id = r.order_id::text
            WHERE {_OF_PHASE} AND r.status = 'COMPLETED'
            """,
            of_phase,
        ).fetchone()
    created = [float(r[0]) for r in rows]
    completed = [(float(r[0]), float(r[1])) for r in rows if r[1] is not None]
    return {
        "states": counts,
        "created": created,
        "completed": completed,
        "read_model_completed": read_model_completed[0] if read_model_completed else 0,
    }


def phase_progress(cfg: Config, since: float) -> tuple[dict[str, int], int]:
    """Sagas by state, and orders COMPLETED in the read model, of the orders created since ``since``.

    Two counts over two tables, cheap enough to poll every second while the stack works: the
    exact membership of a phase (:func:`phase_orders`, by payment token) costs an index probe
    per order into two tables, and polled every second it would be a good part of what the
    per-order counters of the shape count. Earlier phases' orders are terminal before the next
    starts, so they change nothing here.
    """
    moment = [since]
    with psycopg.connect(conninfo(cfg.database_url)) as db:
        states = dict(
            db.execute(
                "SELECT state, count(*) FROM saga_instance "
                "WHERE created_at >= to_timestamp(%s) GROUP BY state",
                moment,
            ).fetchall()
        )
        completed = db.execute(
            "SELECT count(*) FROM order_read_model "
            "WHERE created_at >= to_timestamp(%s) AND status = 'COMPLETED'",
            moment,
        ).fetchone()
    return states, int(completed[0]) if completed else 0


def drain(cfg: Config, phase: str, since: float) -> tuple[dict[str, Any], float]:
    """Wait until every order of ``phase`` (begun at ``since``) is terminal, or progress stalls;
    the phase's snapshot then."""
    started = time.monotonic()
    last_key: tuple[tuple[str, int], ...] | None = None
    last_progress = time.monotonic()
    while True:
        states, read_model_completed = phase_progress(cfg, since - 1.0)
        open_count = sum(n for state, n in states.items() if state not in TERMINAL)
        now = time.monotonic()
        if open_count == 0 and states.get("COMPLETED", 0) <= read_model_completed:
            snapshot = phase_orders(cfg, phase)
            settled = sum(n for state, n in snapshot["states"].items() if state not in TERMINAL) == 0
            if settled and snapshot["states"].get("COMPLETED", 0) <= snapshot["read_model_completed"]:
                return snapshot, now - started
        # Progress is any saga changing state, not only one ending: a slow pipeline is not stuck.
        progress_key = (*sorted(states.items()), ("read_model", read_model_completed))
        if progress_key != last_key:
            last_key, last_progress = progress_key, now
        if now - last_progress > cfg.stall_seconds or now - started > cfg.drain_max_seconds:
            log(f"{open_count} orders of {phase} still open: giving up waiting")
            return phase_orders(cfg, phase), now - started
        time.sleep(1)


def end_to_end(
    snapshot: dict[str, Any], accepted: dict[str, Any], window: tuple[float, float], drain_s: float
) -> dict[str, Any]:
    """The end-to-end figures of one phase from its orders' event timestamps."""
    states = snapshot["states"]
    completed = snapshot["completed"]
    start, end = window
    in_window = [done for _, done in completed if start <= done <= end]
    latencies = [(done - created) * 1000 for created, done in completed]
    created_total = sum(states.values())
    last_done = max((done for _, done in completed), default=None)
    overall = None
    if last_done is not None and snapshot["created"]:
        first_created = min(snapshot["created"])
        overall = round(len(completed) / max(last_done - first_created, 1e-3), 1)
    not_terminal = sum(n for state, n in states.items() if state not in TERMINAL)
    return {
        "offered_per_second": accepted.get("ok_per_second"),
        "accepted_2xx": accepted.get("ok"),
        "created": created_total,
        "completed": states.get("COMPLETED", 0),
        "other_terminal": sum(n for s, n in states.items() if s in TERMINAL and s != "COMPLETED"),
        "not_terminal": not_terminal,
        "read_model_completed": snapshot["read_model_completed"],
        "read_model_behind": states.get("COMPLETED", 0) - snapshot["read_model_completed"],
        "lost": max((accepted.get("ok") or 0) - created_total, 0),
        "lost_or_stuck": max((accepted.get("ok") or 0) - created_total, 0) + not_terminal,
        "states": states,
        "completed_per_second_in_window": round(len(in_window) / (end - start), 1),
        "completed_per_second_overall": overall,
        "completions_per_second_series": stats.per_second_buckets([done for _, done in completed]),
        "created_to_completed_ms": stats.summarise_latencies(latencies),
        "drain_seconds": round(drain_s, 1),
    }


def idle(cfg: Config, access: str) -> dict[str, Any]:
    """Orders placed one at a time on an otherwise idle stack, each after the last completed:
    OrderCreated → OrderCompleted of each, the latency of one order when nothing queues, and
    where it goes: the median time from OrderCreated to each event the order's journey records
    (``steps_ms``, in the order they come: one hop of the pipeline after another; for a type
    recorded several times per order, such as SagaTransitioned, the median over all of them)."""
    phase = "idle"
    order_ids: list[str] = []
    with psycopg.connect(conninfo(cfg.database_url), autocommit=True) as db:
        for number in range(cfg.idle_orders):
            body = {
                "items": [{"product_id": PRODUCTS[number % len(PRODUCTS)], "quantity": 1}],
                "payment": {"method": "card", "token": f"tok_bench_{phase}_{number}"},
            }
            request = urllib.request.Request(
                f"http://127.0.0.1:{cfg.port}/api/orders",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {access}"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own http URL
                order_id = json.load(response)["order_id"]
            order_ids.append(order_id)
            deadline = time.monotonic() + 30
            while (
                time.monotonic() < deadline
                and not db.execute(
                    "SELECT 1 FROM event_store WHERE aggregate_id = %s AND event_type = 'OrderCompleted'",
                    [order_id],
                ).fetchone()
            ):
                time.sleep(0.002)
            time.sleep(0.1)  # the stack idle again before the next order
        steps = db.execute(
            """
            SELECT x.event_type,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM x.timestamp - c.timestamp))
            FROM event_store c JOIN event_store x ON x.correlation_id = c.aggregate_id
            WHERE c.event_type = 'OrderCreated' AND c.aggregate_id = ANY(%s)
            GROUP BY x.event_type ORDER BY 2, 1
            """,
            [order_ids],
        ).fetchall()
    snapshot = phase_orders(cfg, phase)
    latencies = [(done - created) * 1000 for created, done in snapshot["completed"]]
    return {
        "orders": cfg.idle_orders,
        "completed": len(latencies),
        "created_to_completed_ms": stats.summarise_latencies(latencies),
        "steps_ms": {event_type: round(float(seconds) * 1000, 1) for event_type, seconds in steps},
    }


# --- Peers ---------------------------------------------------------------------------------------


def pgbench(cfg: Config) -> dict[str, Any]:
    """pgbench with the create-order transaction on a scratch copy of the bench database's schema.

    The whole schema is copied (no rows): the event table's triggers need their functions.
    """
    scratch = f"{cfg.database}_pgbench"
    recreate_database(cfg.database_url, scratch)
    host = urlsplit(cfg.database_url)
    base = [
        "-h",
        host.hostname or "127.0.0.1",
        "-p",
        str(host.port or 5432),
        "-U",
        host.username or "postgres",
    ]
    schema = run(
        ["pg_dump", *base, "--schema-only", cfg.database],
        capture_output=True,
    ).stdout
    run(["psql", *base, "-q", "-v", "ON_ERROR_STOP=1", "-d", scratch], input=schema, capture_output=True)
    results = []
    for clients in cfg.pgbench_clients:
        ticks = machine_ticks()
        out = run(
            [
                "pgbench",
                *base,
                "-n",
                "-f",
                str(ROOT / "bench" / "pgbench_create_order.sql"),
                "-c",
                str(clients),
                "-j",
                str(min(clients, 2)),
                "-T",
                str(max(int(cfg.seconds), 1)),
                scratch,
            ],
            capture_output=True,
        ).stdout
        (LOGS / f"pgbench-{clients}.log").write_text(out)
        stolen = stats.stolen_percent(ticks, machine_ticks())
        results.append({"clients": clients, **stats.parse_pgbench(out), "stolen_percent": stolen})
    with psycopg.connect(conninfo(cfg.database_url, "postgres"), autocommit=True) as db:
        db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
    best = max(results, key=lambda r: r["tps"])
    return {**best, "runs": results}


def peer(cfg: Config) -> dict[str, Any]:
    """The eventsourcing library, one new aggregate per save, on a scratch database."""
    from importlib.metadata import version

    scratch = f"{cfg.database}_peer"
    recreate_database(cfg.database_url, scratch)
    host = urlsplit(cfg.database_url)
    out = run(
        [
            PYTHON,
            str(ROOT / "bench" / "peer_eventsourcing.py"),
            "--seconds",
            str(cfg.seconds),
            "--database",
            scratch,
            "--host",
            host.hostname or "127.0.0.1",
            "--port",
            str(host.port or 5432),
            "--user",
            host.username or "postgres",
            "--password",
            unquote(host.password or ""),
        ],
        capture_output=True,
    ).stdout
    with psycopg.connect(conninfo(cfg.database_url, "postgres"), autocommit=True) as db:
        db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
    return {"version": version("eventsourcing"), **json.loads(out.strip().splitlines()[-1])}


# --- The run ---------------------------------------------------------------------------------------


# --- PostgreSQL: its settings and its counters ---------------------------------------------------

PG_SETTINGS = (
    "server_version",
    "synchronous_commit",
    "fsync",
    "full_page_writes",
    "wal_level",
    "commit_delay",
    "wal_writer_delay",
    "shared_buffers",
    "work_mem",
    "max_connections",
    "max_wal_size",
    "checkpoint_timeout",
    "jit",
    "shared_preload_libraries",
)


def postgres_settings(cfg: Config) -> dict[str, str]:
    """The settings in force for the bench database (its per-database overrides included)."""
    with psycopg.connect(conninfo(cfg.database_url)) as db:
        rows = db.execute(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)",
            [list(PG_SETTINGS)],
        ).fetchall()
    found: dict[str, str] = dict(rows)
    return {name: found.get(name, "n/a") for name in PG_SETTINGS}


def db_counters(cfg: Config) -> dict[str, Any]:
    """PostgreSQL's cumulative counters of the bench database, as of now.

    Commits, rows and the time backends spent running statements (``active_time``) from
    ``pg_stat_database``; rows written and scans per table from
    ``pg_stat_user_tables``; statements from ``pg_stat_statements`` when it is loaded.
    """
    with psycopg.connect(conninfo(cfg.database_url), autocommit=True) as db:
        db.execute("SELECT pg_stat_clear_snapshot()")
        (commits, rollbacks, inserted, updated, deleted, active_ms) = db.execute(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, active_time "
            "FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone() or (0, 0, 0, 0, 0, 0.0)
        tables = {
            name: {"written": int(written), "scans": int(scans)}
            for name, written, scans in db.execute(
                "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del, "
                "COALESCE(seq_scan, 0) + COALESCE(idx_scan, 0) FROM pg_stat_user_tables"
            ).fetchall()
        }
        statements = None
        if db.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone():
            try:
                row = db.execute(
                    "SELECT sum(calls) FROM pg_stat_statements "
                    "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
                ).fetchone()
                statements = int(row[0] or 0) if row else None
            except psycopg.Error:  # the extension exists but the library is not preloaded
                statements = None
    return {
        "commits": int(commits) + int(rollbacks),
        "inserted": int(inserted),
        "updated": int(updated),
        "deleted": int(deleted),
        "active_ms": float(active_ms or 0.0),
        "statements": statements,
        "tables": tables,
    }


def settled_counters(cfg: Config, *, quiet_seconds: float = 1.0, max_seconds: float = 12.0) -> dict[str, Any]:
    """The counters once the rows written stop moving: backends report theirs within ~10 s."""
    deadline = time.monotonic() + max_seconds
    last = db_counters(cfg)
    while time.monotonic() < deadline:
        time.sleep(quiet_seconds)
        now = db_counters(cfg)
        if stats.rows_written(now) == stats.rows_written(last):
            return now
        last = now
    return last


def ensure_postgres(cfg: Config) -> None:
    """pg_stat_statements, when the server preloads it (its counts are then in the report)."""
    with psycopg.connect(conninfo(cfg.database_url), autocommit=True) as db:
        preload = db.execute("SHOW shared_preload_libraries").fetchone()
        if preload and "pg_stat_statements" in str(preload[0]):
            db.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")


# --- One load shape ---------------------------------------------------------------------------------


class BacklogSampler(threading.Thread):
    """Every ``every`` seconds while the sustained phase runs and drains: each context's work queue
    depth (messages ready + unacknowledged, from RabbitMQ's management API) and the phase's open
    sagas by state and step. Where the backlog sits says which stage limits completion. The
    management API's figures are refreshed every few seconds by the broker. A failing API is
    recorded once, and the run goes on without queue depths."""

    def __init__(self, cfg: Config, phase: str, *, every: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.cfg, self.phase, self.every = cfg, phase, every
        self.series: list[dict[str, Any]] = []
        self.error: str | None = None
        self._stopping = threading.Event()
        self._opened_at = time.time()

    def run(self) -> None:
        parts = urlsplit(self.cfg.broker_url)
        credentials = f"{unquote(parts.username or 'guest')}:{unquote(parts.password or 'guest')}"
        api = os.environ.get("BENCH_RABBITMQ_API") or f"http://{parts.hostname or '127.0.0.1'}:15672"
        columns = "name,messages_ready,messages_unacknowledged"
        url = f"{api}/api/queues/{quote(self.cfg.vhost, safe='')}?columns={columns}"
        request = urllib.request.Request(  # noqa: S310 - the broker's own http API
            url, headers={"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}
        )
        prefix = f"tok_bench_{self.phase}_%"
        with psycopg.connect(conninfo(self.cfg.database_url), autocommit=True) as db:
            while not self._stopping.is_set():
                sample: dict[str, Any] = {"t": round(time.time() - self._opened_at, 1), "queues": {}}
                if self.error is None:
                    try:
                        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - our broker
                            for queue in json.load(response):
                                context = queue["name"].removeprefix("oms.")
                                if queue["name"].startswith("oms.") and "." not in context:
                                    sample["queues"][context] = int(queue.get("messages_ready") or 0) + int(
                                        queue.get("messages_unacknowledged") or 0
                                    )
                    except (OSError, ValueError, KeyError) as exc:
                        self.error = f"RabbitMQ management API: {exc}"
                rows = db.execute(
                    "SELECT s.state || ':' || coalesce(s.step, ''), count(*) FROM saga_instance s "
                    "WHERE s.payment_token LIKE %s AND s.state NOT IN ('COMPLETED', 'COMPENSATED', 'FAILED') "
                    "GROUP BY 1",
                    [prefix],
                ).fetchall()
                sample["open_sagas"] = {step: int(n) for step, n in rows}
                self.series.append(sample)
                self._stopping.wait(self.every)

    def stop(self) -> list[dict[str, Any]]:
        self._stopping.set()
        self.join(timeout=10)
        return self.series


def run_shape(cfg: Config, stack: Stack, access: str, shape: str) -> dict[str, Any]:
    """The accepted and sustained end-to-end phases of one shape, its cost per order, its audit."""
    assert stack.process is not None
    result: dict[str, Any] = {"shape": shape, "products": len(stats.shape_products(shape, PRODUCTS))}
    counters_before = db_counters(cfg)
    shape_started = time.time()

    phase = f"{shape}-accepted"
    log(f"[{shape}] accepted: {cfg.connections} connections for {cfg.seconds:.0f} s")
    samples: dict[str, list[dict[str, Any]]] = {}

    def sample() -> None:
        samples["before"] = stack_processes(stack.process.pid)  # type: ignore[union-attr]
        time.sleep(cfg.seconds / 2)
        samples["middle"] = stack_processes(stack.process.pid)  # type: ignore[union-attr]

    sampler = threading.Thread(target=sample, daemon=True)
    counters = intake_counters(cfg)
    ticks = machine_ticks()
    window_start = time.time()
    sampler.start()
    accepted = wrk(
        cfg, phase=phase, seconds=cfg.seconds, connections=cfg.connections, access=access, shape=shape
    )
    window_end = time.time()
    result["stolen_percent"] = {"accepted": stats.stolen_percent(ticks, machine_ticks())}
    result["intake"] = {"accepted": stats.counted_between(counters, intake_counters(cfg))}
    sampler.join()
    after = stack_processes(stack.process.pid)
    result["accepted"] = accepted
    result["memory"] = [{k: p[k] for k in ("name", "pid", "rss_kib", "pss_kib")} for p in samples["middle"]]
    result["cpu_during_accepted"] = cpu_shares(samples["before"], after, window_end - window_start)
    log(f"[{shape}] accepted {accepted['ok_per_second']}/s, P95 {accepted['latency_ms']['p95']} ms; draining")
    snapshot, drain_s = drain(cfg, phase, window_start)
    result["end_to_end_burst"] = {
        "description": f"closed loop, {cfg.connections} connections, then drained",
        **end_to_end(snapshot, accepted, (window_start, window_end), drain_s),
    }

    phase = f"{shape}-e2e"
    delay_ms = 1000.0 * cfg.e2e_connections / cfg.e2e_rate
    log(
        f"[{shape}] end to end: ~{cfg.e2e_rate:.0f}/s offered for {cfg.e2e_seconds:.0f} s "
        f"({cfg.e2e_connections} connections, {delay_ms:.0f} ms think time)"
    )
    counters = intake_counters(cfg)
    ticks = machine_ticks()
    window_start = time.time()
    backlog = BacklogSampler(cfg, phase)
    backlog.start()
    paced = wrk(
        cfg,
        phase=phase,
        seconds=cfg.e2e_seconds,
        connections=cfg.e2e_connections,
        access=access,
        delay_ms=delay_ms,
        shape=shape,
    )
    window_end = time.time()
    result["stolen_percent"]["sustained"] = stats.stolen_percent(ticks, machine_ticks())
    result["intake"]["sustained"] = stats.counted_between(counters, intake_counters(cfg))
    snapshot, drain_s = drain(cfg, phase, window_start)
    series = backlog.stop()
    result["end_to_end"] = {
        "description": (
            f"sustained {cfg.e2e_seconds:.0f} s at ~{cfg.e2e_rate:.0f}/s offered, "
            f"{cfg.e2e_connections} connections, then drained"
        ),
        "paced_request_latency_ms": paced["latency_ms"],
        "errors": paced["errors"],
        **end_to_end(snapshot, paced, (window_start, window_end), drain_s),
        "backlog": stats.backlog_summary(series, window_end - window_start),
        "backlog_series": series,
        **({"backlog_error": backlog.error} if backlog.error else {}),
    }

    counters_after = settled_counters(cfg)
    completed = result["end_to_end_burst"]["completed"] + result["end_to_end"]["completed"]
    result["per_order"] = stats.per_order_costs(counters_before, counters_after, completed)
    result["seconds"] = round(time.time() - shape_started, 1)
    log(f"[{shape}] money audit (manage.py audit_money) on every order so far")
    result["audit"] = money_audit(cfg)
    return result


# --- The run ---------------------------------------------------------------------------------------


def main() -> int:
    cfg = Config()
    LOGS.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    report: dict[str, Any] = {
        "started_at": started_at,
        "config": {
            "cpus": os.cpu_count(),
            "load_average": " ".join(f"{v:.2f}" for v in os.getloadavg()),
            "seconds": cfg.seconds,
            "e2e_seconds": cfg.e2e_seconds,
            "e2e_rate": cfg.e2e_rate,
            "e2e_connections": cfg.e2e_connections,
            "connections": cfg.connections,
            "web_workers": cfg.web_workers,
            "database": cfg.database,
            "vhost": cfg.vhost,
            "shapes": cfg.shapes,
        },
        "shapes": {},
        "notes": [],
    }
    log(f"preparing {cfg.database} / vhost {cfg.vhost}")
    prepare(cfg)
    report["config"]["order_intake_max_open"] = stack_setting(cfg, "ORDER_INTAKE_MAX_OPEN")
    report["config"]["consumer_prefetch"] = stack_setting(cfg, "CONSUMER_PREFETCH")
    report["config"]["consumer_prefetch_by_context"] = stack_setting(cfg, "CONSUMER_PREFETCH_BY_CONTEXT")
    ensure_postgres(cfg)
    report["postgres"] = postgres_settings(cfg)
    durable = stats.durability_problems(report["postgres"])
    report["notes"].extend(durable)
    stack = Stack(cfg)
    log("starting the stack")
    stack.start()
    try:
        access = token(cfg)
        log("warm-up (3 s, 8 connections)")
        warm_start = time.time()
        warm = wrk(cfg, phase="warmup", seconds=3, connections=8, access=access)
        drain(cfg, "warmup", warm_start)
        report["warmup"] = {"ok": warm["ok"], "errors": warm["errors"]}
        log(f"idle: {cfg.idle_orders} orders one at a time")
        report["idle"] = idle(cfg, access)
        for shape in cfg.shapes:
            report["shapes"][shape] = run_shape(cfg, stack, access, shape)
    finally:
        log("stopping the stack")
        code = stack.stop()
        report["stack_exit_code"] = code
    # A failing peer must not throw away the figures measured so far: its error is reported.
    for key, measure in (("pgbench", pgbench), ("peer", peer)):
        log(f"peer: {key}")
        try:
            report[key] = measure(cfg)
        except Exception as exc:  # noqa: BLE001 - any failure of a peer is reported, not fatal
            detail = getattr(exc, "stderr", None) or ""
            report[key] = {"error": f"{exc} {detail}".strip()}
            report["notes"].append(f"{key} failed: {report[key]['error'][:300]}")
    report["ratios"] = stats.shape_ratios(
        report["shapes"], report["pgbench"].get("tps"), report["peer"].get("per_second")
    )
    if os.getloadavg()[0] > (os.cpu_count() or 1):
        report["notes"].append("The machine was loaded by other work during the run: figures are noisy.")
    write_report(report)
    # The run is only good if money and stock are right after every shape, durability on.
    audits_ok = all((result.get("audit") or {}).get("ok") for result in report["shapes"].values())
    return 0 if audits_ok and report["shapes"] and not durable else 1


def money_audit(cfg: Config) -> dict[str, Any]:
    """``manage.py audit_money --json`` on the bench database: every order, after the drain."""
    done = subprocess.run(
        [PYTHON, "manage.py", "audit_money", "--json"],
        cwd=ROOT,
        env=cfg.stack_env(),
        text=True,
        capture_output=True,
        check=False,
    )
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        return {"ok": False, "exit_code": done.returncode, "error": (done.stderr or done.stdout)[-2000:]}
    result["exit_code"] = done.returncode
    # The summary is enough for the report; the full list stays in the log for a failed run.
    if result.get("discrepancies"):
        (LOGS / "audit.json").write_text(json.dumps(result, indent=2))
    result["discrepancies"] = len(result.get("discrepancies") or [])
    return result


def write_report(report: dict[str, Any]) -> None:
    stamp = report["started_at"].replace(":", "").replace("-", "")
    text = stats.render_markdown(report)
    payload = json.dumps(report, indent=2, sort_keys=True, default=str)
    for name, content in (
        (f"{stamp}.json", payload),
        (f"{stamp}.md", text),
        ("latest.json", payload),
        ("latest.md", text),
    ):
        with tempfile.NamedTemporaryFile("w", dir=RESULTS, delete=False) as tmp:
            tmp.write(content)
        os.chmod(tmp.name, 0o644)  # a temporary file is private; a report is not
        os.replace(tmp.name, RESULTS / name)
    print(text)
    log(f"written to {RESULTS}/{stamp}.json and .md (and latest.*)")


if __name__ == "__main__":
    sys.exit(main())
