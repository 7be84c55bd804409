"""The chaos stack: its configuration, a fresh database per scenario, and its processes.

The processes are those of ``deploy/run_stack.py`` (the same command lines, from
``stack_processes``), but each is started on its own, in its own process group, so a scenario
can SIGKILL one kind (gunicorn's or celery's children die with their group) or all of them at
once. A small orchestrator restarts any process that exits without being told to, the way a
container platform would; those restarts are counted and reported.

Isolation (the machine is shared): the database, the RabbitMQ vhost and the Redis db are the
run's own (``CHAOS_DATABASE_URL``, ``CHAOS_BROKER_URL``, ``CHAOS_REDIS_URL``; their names must
contain "chaos"), and the stack reaches Redis through :class:`TcpProxy`, which the Redis
scenario stops and starts instead of the shared Redis server.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "deploy"))

import run_stack  # noqa: E402 - deploy/run_stack.py, after the path fix above

from bench.run import conninfo, recreate_database, recreate_vhost  # noqa: E402 - bench/run.py

PYTHON = sys.executable
LOGS = ROOT / "var" / "chaos"


def log(text: str) -> None:
    print(f"chaos: {text}", file=sys.stderr, flush=True)


# The settings the chaos stack runs with (environment of every process), chosen so that a
# scenario settles in seconds rather than minutes; everything else is the local settings.
STACK_SETTINGS = {
    # A saga without progress fails (and compensates) after 30 s instead of 300 s.
    "SAGA_TIMEOUT": "30",
    # An unanswered step is sent again after 10 s instead of 30 s.
    "SAGA_STEP_TIMEOUT": "10",
    # A gateway call is given 1 s (tok_slow / tok_late answer after it), not 3 s.
    "PAYMENT_TIMEOUT": "1",
    # A payment left in flight by a dead process is resumed after 3 s, not 5 s.
    "PAYMENT_RESUME_AFTER": "3",
    # The reconciliation with the gateway's ledger (late captures) every 5 s instead of 30 s, so
    # the quiet spell before the audit (chaos/audit.py settle) covers at least one run of it.
    "PAYMENT_RECONCILE_EVERY": "5",
    # A failed message is retried after 0.5, 1, 2 and 4 s, then dead-lettered (default 1, 4, 16 s).
    "CONSUMER_RETRY_DELAYS": "0.5,1,2,4",
    # A killed relay's claimed rows are taken over after 3 s, not 30 s.
    "RELAY_CLAIM_SECONDS": "3",
    # The load comes from two users at ~20 orders/s: no throttling.
    "API_THROTTLE_USER": "off",
    "API_THROTTLE_ANON": "off",
    "API_THROTTLE_LOGIN": "off",
    # local.py defaults DEBUG on, which records every query: not what production runs.
    "DEBUG": "0",
    "PYTHONUNBUFFERED": "1",
    "LOG_LEVEL": "INFO",
}


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


@dataclass
class ChaosConfig:
    """Where the chaos stack runs and how hard it is driven (environment ``CHAOS_*``)."""

    database_url: str = field(
        default_factory=lambda: (
            os.environ.get("CHAOS_DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/oms_chaos"
        )
    )
    broker_url: str = field(
        default_factory=lambda: (
            os.environ.get("CHAOS_BROKER_URL") or "amqp://guest:guest@127.0.0.1:5672/oms_chaos"
        )
    )
    redis_url: str = field(
        default_factory=lambda: os.environ.get("CHAOS_REDIS_URL") or "redis://127.0.0.1:6379/10"
    )
    port: int = field(default_factory=lambda: int(os.environ.get("CHAOS_PORT") or 8765))
    web_workers: str = field(default_factory=lambda: os.environ.get("WEB_CONCURRENCY") or "2")
    password: str = field(default_factory=lambda: os.environ.get("DEMO_PASSWORD") or "demo-pass-123")
    redis_proxy_port: int = 0  # set once the proxy listens
    # Changes to STACK_SETTINGS for this run (python -m chaos --set NAME=VALUE).
    settings_overrides: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for url in (self.database_url, self.broker_url):
            if "chaos" not in url.rsplit("/", 1)[-1]:
                raise SystemExit(
                    f"refusing to recreate {url!r}: a chaos database/vhost name must contain 'chaos'"
                )

    @property
    def database(self) -> str:
        return unquote(urlsplit(self.database_url).path.lstrip("/"))

    @property
    def template(self) -> str:
        """A migrated and seeded database each scenario's database is copied from."""
        return f"{self.database}_template"

    @property
    def vhost(self) -> str:
        return unquote(urlsplit(self.broker_url).path.lstrip("/")) or "/"

    @property
    def redis_db(self) -> int:
        return int(urlsplit(self.redis_url).path.lstrip("/") or 0)

    @property
    def redis_host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.redis_url)
        return parts.hostname or "127.0.0.1", parts.port or 6379

    def stack_env(self, *, database: str | None = None) -> dict[str, str]:
        """The environment of the stack's processes and of manage.py."""
        env = dict(os.environ)
        for name in ("PROMETHEUS_MULTIPROC_DIR", "DJANGO_SETTINGS_MODULE"):
            env.pop(name, None)
        redis_url = self.redis_url
        if self.redis_proxy_port:
            redis_url = (
                urlsplit(self.redis_url)._replace(netloc=f"127.0.0.1:{self.redis_proxy_port}").geturl()
            )
        database_url = self.database_url
        if database is not None:
            database_url = urlsplit(self.database_url)._replace(path=f"/{database}").geturl()
        env.update(STACK_SETTINGS)
        env.update(self.settings_overrides)
        env.update(
            {
                "DATABASE_URL": database_url,
                "BROKER_URL": self.broker_url,
                "REDIS_URL": redis_url,
                "DJANGO_SETTINGS_MODULE": "config.settings.local",
                "PORT": str(self.port),
                "WEB_CONCURRENCY": self.web_workers,
                "DEMO_PASSWORD": self.password,
            }
        )
        return env

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(conninfo(self.database_url), autocommit=True, connect_timeout=10)


def manage(cfg: ChaosConfig, *args: str, database: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=cfg.stack_env(database=database),
        check=True,
        text=True,
        capture_output=True,
    )


def prepare_template(cfg: ChaosConfig) -> dict[str, int]:
    """Services up; the template database migrated and seeded. Returns each product's stock."""
    subprocess.run(["bash", "deploy/ensure_services.sh"], cwd=ROOT, env=cfg.stack_env(), check=True)
    recreate_database(cfg.database_url, cfg.template)
    manage(cfg, "migrate", "--noinput", "-v", "0", database=cfg.template)
    manage(cfg, "seed_demo", database=cfg.template)
    with psycopg.connect(conninfo(cfg.database_url, cfg.template), autocommit=True) as db:
        rows = db.execute("SELECT product_id, received FROM inventory_product").fetchall()
    return {product_id: received for product_id, received in rows}


def fresh_state(cfg: ChaosConfig) -> None:
    """A copy of the template database, an empty vhost and an empty Redis db.

    The copy is migrated again: the tree is shared, and a migration added since the template
    was made must not fail the scenario. RabbitMQ may be restarting (other users of this
    machine test that too): the vhost is retried for a while.
    """
    import redis

    with psycopg.connect(conninfo(cfg.database_url, "postgres"), autocommit=True) as db:
        db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(cfg.database)))
        db.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(cfg.database), sql.Identifier(cfg.template)
            )
        )
    manage(cfg, "migrate", "--noinput", "-v", "0")
    deadline = time.monotonic() + 90
    while True:
        try:
            recreate_vhost(cfg.vhost)
            break
        except subprocess.CalledProcessError as exc:
            if time.monotonic() > deadline:
                raise
            log(f"rabbitmqctl failed ({exc.returncode}); retrying")
            time.sleep(3)
    host, port = cfg.redis_host_port
    redis.Redis(host=host, port=port, db=cfg.redis_db, socket_timeout=5).flushdb()


def drop_databases(cfg: ChaosConfig) -> None:
    """Remove the run's databases (the last scenario's one is kept for inspection unless asked)."""
    with psycopg.connect(conninfo(cfg.database_url, "postgres"), autocommit=True) as db:
        for name in (cfg.template, cfg.database):
            db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --- Processes ----------------------------------------------------------------------------------


class Proc:
    """One stack process in its own process group, its output appended to a log file."""

    def __init__(self, spec: run_stack.ProcessSpec, env: dict[str, str], log_dir: Path) -> None:
        self.name = spec.name
        self.argv = spec.argv
        self.env = env
        self.log_path = log_dir / f"{spec.name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group (gunicorn's and celery's children too): a crash."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_count(self, needle: str) -> int:
        return self.log_text().count(needle)


READY_LINES = {"consumers": '"consuming ', "relay": '"relay running"'}


def family(name: str) -> str:
    """A process's kind: ``consumers`` for ``consumers-1``, ``consumers-2``… (STACK_CONSUMERS groups)."""
    return name.split("-", 1)[0]


def ready_line(name: str) -> str | None:
    """The line process ``name`` logs when it is ready, if it logs one."""
    return READY_LINES.get(family(name))


class ChaosStack:
    """The stack's processes, with an orchestrator that restarts any that exit on their own."""

    def __init__(
        self, cfg: ChaosConfig, log_dir: Path, *, overrides: dict[str, dict[str, str]] | None = None
    ):
        self.cfg = cfg
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        env = cfg.stack_env()
        metrics_dir = run_stack.prepare_metrics_dir(log_dir / "prometheus-multiproc")
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        # Beat and the relay as processes of their own (as the scaled-out deployments run them,
        # not as threads of the worker): the relay scenario kills the relay alone.
        specs = run_stack.stack_processes(
            python=PYTHON, host="127.0.0.1", port=str(cfg.port), beat_and_relay_apart=True
        )
        self.procs: dict[str, Proc] = {}
        for spec in specs:
            # The beat schedule file of deploy/run_stack.py is shared with `make stack`: not ours.
            argv = [
                f"--schedule={log_dir / 'celerybeat-schedule'}" if arg.startswith("--schedule=") else arg
                for arg in spec.argv
            ]
            # Overrides by name (``consumers-1``) or by kind (``consumers``: each of them).
            wanted = overrides or {}
            proc_env = {**env, **spec.env, **wanted.get(family(spec.name), {}), **wanted.get(spec.name, {})}
            self.procs[spec.name] = Proc(run_stack.ProcessSpec(spec.name, argv), proc_env, log_dir)
        self.unplanned_restarts: list[dict[str, Any]] = []
        self._held: set[str] = set()
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._orchestrator = threading.Thread(target=self._watch, daemon=True)
        self.started_at = 0.0

    # -- lifecycle --

    def start(self, timeout: float = 120) -> float:
        """Start every process and wait until the web answers and the consumers and relay run."""
        begin = time.monotonic()
        self.started_at = begin
        with self._lock:
            for proc in self.procs.values():
                proc.start()
        if not self._orchestrator.is_alive():
            self._orchestrator.start()
        self.wait_ready(timeout=timeout, since={name: 0 for name in self.procs})
        return time.monotonic() - begin

    def wait_ready(self, *, timeout: float, since: dict[str, int]) -> None:
        """Web healthy; each process with a ready line logged it more than ``since`` times."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.web_ready() and all(
                proc.log_count(line) > since.get(name, 0)
                for name, proc in self.procs.items()
                if (line := ready_line(name)) is not None
            ):
                return
            time.sleep(0.3)
        raise RuntimeError(f"the chaos stack was not ready within {timeout:.0f} s: see {self.log_dir}")

    def web_ready(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.cfg.port}/health/ready", timeout=2
            ) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """Tear down: SIGKILL every group (the database is dropped after the audit anyway)."""
        self._stopping.set()
        with self._lock:
            for proc in self.procs.values():
                proc.kill()

    # -- faults --

    @property
    def consumers(self) -> list[str]:
        """The names of the consumer processes (one per STACK_CONSUMERS group)."""
        return [name for name in self.procs if family(name) == "consumers"]

    def kill(self, *names: str) -> None:
        """SIGKILL these processes together and keep them down until :meth:`restart`."""
        with self._lock:
            self._held.update(names)
            for name in names:
                self.procs[name].kill()

    def restart(self, *names: str) -> None:
        with self._lock:
            for name in names:
                self.procs[name].start()
                self._held.discard(name)

    def kill_and_restart(self, *names: str) -> None:
        self.kill(*names)
        self.restart(*names)

    def wait_process_ready(self, name: str, since: int, timeout: float = 60) -> bool:
        """Whether ``name`` logged its ready line more than ``since`` times within ``timeout``."""
        line = ready_line(name)
        assert line is not None, f"{name} logs no ready line"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].log_count(line) > since:
                return True
            time.sleep(0.1)
        return False

    def _watch(self) -> None:
        while not self._stopping.wait(0.25):
            with self._lock:
                for name, proc in self.procs.items():
                    if name in self._held or proc.popen is None or proc.alive:
                        continue
                    code = proc.popen.returncode
                    self.unplanned_restarts.append(
                        {
                            "process": name,
                            "exit_code": code,
                            "at_s": round(time.monotonic() - self.started_at, 1),
                        }
                    )
                    log(f"{name} exited with {code} on its own: restarting it")
                    proc.start()


# --- Redis behind a proxy -------------------------------------------------------------------------


class TcpProxy:
    """A TCP forwarder on 127.0.0.1 (a free port) to the real Redis.

    ``down()`` closes the listening socket and every open connection: to the stack, Redis is
    gone (connections reset, new ones refused) while the shared Redis server keeps serving the
    other users of this machine. ``up()`` listens again on the same port.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._up = threading.Event()

    def up(self) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._up.set()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self.port

    def down(self) -> None:
        self._up.clear()
        with self._lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            for sock in list(self._sockets):
                _close(sock)
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self._up.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if not self._up.is_set():
                    _close(client)
                    _close(upstream)
                    return
                self._sockets.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        pair = {a: b, b: a}
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                self._sockets.discard(a)
                self._sockets.discard(b)
            _close(a)
            _close(b)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
