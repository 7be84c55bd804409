"""Run the stack mode's processes together in the foreground (``make stack``, one container).

web (gunicorn with uvicorn workers, config/asgi.py), the consumers and the Celery worker start
side by side; beat's scheduler and the outbox relay run as threads of the worker
(``--with-beat-thread``, ``--with-relay``: two processes, about 190 MiB, fewer). The output
stays one JSON object per line (docs/operations.md "Logs"): each child logs JSON naming itself
(``OMS_PROCESS``, the ``process`` field) and its lines are passed through as they are; a line
that is not JSON (something printed past the logging configuration) is wrapped into one, and
the supervisor's own lines are JSON.
Ctrl-C or SIGTERM stops all of them; if one exits on its own, the others are stopped too and
the supervisor exits non-zero, so a container restarts as a whole instead of running
without, say, its relay.

``--split`` (``make split``, docs/architecture.md "Moving a context out") runs the same code as
four services instead of one: orders (with the saga) on 8081, payments on 8082, inventory on
8083 and queries on 8084 (``ORDERS_SERVICE_PORT`` … ``QUERIES_SERVICE_PORT``). Each has its own
process set — web, consumers, the Celery worker with beat and the relay — named ``<service>-<process>`` in the
logs, with ``OMS_SERVICE`` naming the service, its own Prometheus directory and Celery queue, and
the PostgreSQL role of its service (``manage.py create_service_roles``) in ``DATABASE_URL``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent


def _load_services() -> ModuleType:
    """config/services.py by its path: the supervisor imports no Django, Celery or settings."""
    spec = importlib.util.spec_from_file_location("oms_services", ROOT / "config" / "services.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


services = _load_services()
STOP_GRACE_SECONDS = float(os.environ.get("STOP_GRACE_SECONDS", "20"))
# gunicorn's worker class for the web process: each worker one event loop (uvicorn).
WEB_WORKER_CLASS = "uvicorn_worker.UvicornWorker"


@dataclass(frozen=True)
class ProcessSpec:
    """One supervised program: a name for its log lines (``process``) and its command line."""

    name: str
    argv: list[str]
    # Variables set for this process only (a split service's OMS_SERVICE, DATABASE_URL, ...).
    env: dict[str, str] = field(default_factory=dict)


def access_log_wanted() -> bool:
    """Whether gunicorn writes a line per request (``WEB_ACCESS_LOG=1``).

    Off by default: every line is formatted in the worker, then read, prefixed and printed
    again by this supervisor, on the path of every order; errors are logged either way.
    """
    return os.environ.get("WEB_ACCESS_LOG", "") == "1"


def stack_processes(
    *,
    python: str,
    host: str,
    port: str,
    service: str = services.ALL,
    web_workers: str | None = None,
    beat_and_relay_apart: bool = False,
) -> list[ProcessSpec]:
    """The processes of the stack mode (docs/architecture.md "Run modes"), one of each.

    Beat and the relay are threads of the worker, unless ``beat_and_relay_apart`` (the chaos
    suite, which kills the relay alone): then they are processes of their own, as in the
    deployments that scale the worker out."""
    bin_dir = Path(python).parent
    manage = [python, str(ROOT / "manage.py")]
    suffix = suffix_of(service)
    schedule = ROOT / "var" / f"celerybeat-schedule{suffix}"
    # A split service's consumers take its own contexts' queues (consume --all, OMS_SERVICE).
    consumers = "all" if suffix else os.environ.get("STACK_CONSUMERS", DEFAULT_CONSUMERS)
    charges = (
        {} if "PAYMENT_CHARGE_WORKERS" in os.environ else {"PAYMENT_CHARGE_WORKERS": STACK_CHARGE_WORKERS}
    )
    return [
        ProcessSpec(
            "web",
            [
                str(bin_dir / "gunicorn"),
                f"--config={ROOT / 'config' / 'gunicorn.conf.py'}",
                # ASGI: POST /api/orders on its thin endpoint, the rest on Django (config/asgi.py).
                f"--worker-class={WEB_WORKER_CLASS}",
                "config.asgi:application",
                f"--bind={host}:{port}",
                f"--workers={web_workers or os.environ.get('WEB_CONCURRENCY', '2')}",
                *(["--access-logfile=-"] if access_log_wanted() else []),
                "--graceful-timeout=15",
            ],
        ),
        *consumer_processes(manage, consumers, payments_env=charges),
        ProcessSpec(
            "worker",
            # --quiet: no banner (plain text); the log level is LOG_LEVEL, as everywhere.
            [
                str(bin_dir / "celery"),
                *["-A", "config", "--quiet", "worker", "-Q", services.task_queue(service)],
                # Threads, not forked children (one per CPU, as before): the periodic tasks wait
                # on the database, and one process takes ~100 MiB where a parent and two
                # children took ~300.
                "--pool=threads",
                # Split: one node per service (its own name, or the pidbox queues clash), one child.
                *(
                    [
                        f"--hostname={service}@%h",
                        f"--concurrency={os.environ.get('SPLIT_WORKER_CONCURRENCY', '1')}",
                    ]
                    if suffix
                    else []
                ),
                *(
                    []
                    if beat_and_relay_apart
                    else ["--with-beat-thread", f"--schedule-filename={schedule}", "--with-relay"]
                ),
            ],
        ),
        *(
            [
                ProcessSpec(
                    "beat",
                    [str(bin_dir / "celery"), "-A", "config", "--quiet", "beat", f"--schedule={schedule}"],
                ),
                ProcessSpec("relay", [*manage, "relay_outbox"]),
            ]
            if beat_and_relay_apart
            else []
        ),
    ]


def suffix_of(service: str) -> str:
    """What a split service's names carry (``-payments``); nothing for the whole stack."""
    return "" if service == services.ALL else f"-{service}"


# Charge runners of the one process here that consumes payments (the settings' default, 8, suits
# deployments that scale consumers out: each runner keeps a database connection). A runner
# mostly waits, on the gateway and on its decision's commit: with 32 a backlog drains about a
# quarter faster (docs/performance.md). PAYMENT_CHARGE_WORKERS in the environment wins.
STACK_CHARGE_WORKERS = "32"

# Two consumer processes: the saga orchestrator in one, every other context in the other. One
# process for all contexts is bound to one core by the GIL; this drains a backlog 1.4 to 1.9 times
# as fast on two cores for ~100 MiB more (docs/performance.md).
DEFAULT_CONSUMERS = "sagas;*"


def consumer_processes(
    manage: list[str], layout: str, *, payments_env: dict[str, str] | None = None
) -> list[ProcessSpec]:
    """The consumer processes of ``STACK_CONSUMERS`` (default :data:`DEFAULT_CONSUMERS`): groups
    of contexts separated by ``;``, one process per group, e.g. ``inventory,payments;sagas,queries``.
    ``all`` is one group of every context; ``*`` every context no other group names. A group
    may repeat: each copy competes for the same queues. ``payments_env`` is set for the
    processes whose group consumes payments (they run the charges)."""
    groups = [group.strip() for group in layout.split(";") if group.strip()] or ["all"]
    named = {name.strip() for group in groups for name in group.split(",")} - {"all", "*", ""}
    specs = []
    for number, group in enumerate(groups, start=1):
        contexts = [name.strip() for name in group.split(",") if name.strip()]
        if contexts == ["all"]:
            args = ["--all"]
        elif contexts == ["*"]:
            args = ["--all", *(f"--exclude={name}" for name in sorted(named))]
        else:
            args = contexts
        name = "consumers" if len(groups) == 1 else f"consumers-{number}"
        pays = (
            contexts == ["all"] or "payments" in contexts or (contexts == ["*"] and "payments" not in named)
        )
        env = dict(payments_env or {}) if pays else {}
        specs.append(ProcessSpec(name, [*manage, "consume", *args], env))
    return specs


class Supervisor:
    """Starts the processes, relays their output, and stops them all together."""

    def __init__(self, specs: list[ProcessSpec]) -> None:
        self._specs = specs
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._stop_requested = threading.Event()
        self._print_lock = threading.Lock()

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        """Signal handler: stop everything (the main loop does the work)."""
        self._stop_requested.set()

    def run(self) -> int:
        """Run until a stop request (exit 0) or until one process exits (its code, at least 1)."""
        for spec in self._specs:
            self._start(spec)
        exit_code = 0
        while not self._stop_requested.is_set():
            dead = [
                (name, proc.returncode) for name, proc in self._processes.items() if proc.poll() is not None
            ]
            if dead:
                name, code = dead[0]
                self._say(f"{name} exited with {code}: stopping the others")
                # Killed by a signal: report it the shell's way (128 + signal number).
                exit_code = 128 - code if code < 0 else code or 1
                break
            self._stop_requested.wait(0.2)
        self._stop_all()
        return exit_code

    def _start(self, spec: ProcessSpec) -> None:
        process = subprocess.Popen(  # noqa: S603 - our own command lines
            spec.argv,
            cwd=ROOT,
            env={**os.environ, **spec.env, "OMS_PROCESS": spec.name},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Own process group: a terminal's Ctrl-C reaches only the supervisor, which then
            # stops the children in order instead of all of them dying at once.
            start_new_session=True,
        )
        self._processes[spec.name] = process
        threading.Thread(target=self._relay_output, args=(spec.name, process), daemon=True).start()
        self._say(f"started {spec.name} (pid {process.pid}): {' '.join(spec.argv)}")

    def _relay_output(self, name: str, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in iter(process.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith("{"):
                self._write(line)  # a JSON line of the child's: passed through, not parsed again
            elif line.strip():
                # Printed past the logging configuration (Celery's "Warm shutdown" note, a crash
                # before logging was set up): kept, as a JSON line of logger "stdout".
                self._write(json_line("INFO", line, process=name, pid=process.pid, logger="stdout"))

    def _stop_all(self) -> None:
        for process in self._processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for name, process in self._processes.items():
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                self._say(f"{name} did not stop in {STOP_GRACE_SECONDS:.0f}s: killing it")
                process.kill()
                process.wait()
        self._say("all processes stopped")

    def _say(self, text: str) -> None:
        self._write(json_line("INFO", text, process="stack", pid=os.getpid()))

    def _write(self, line: str) -> None:
        with self._print_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


def json_line(level: str, event: str, *, process: str, pid: int, logger: str = "stack") -> str:
    """A log line of the supervisor's, with the fields of config/logging.py's lines."""
    now = time.time()
    timestamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    record = {"timestamp": timestamp, "level": level, "logger": logger, "event": event}
    return json.dumps({**record, "process": process, "pid": pid}, ensure_ascii=False, separators=(",", ":"))


def prepare_metrics_dir(directory: Path) -> Path:
    """An empty Prometheus multiprocess directory for this run, shared by every process."""
    # Files of a previous run would add its counters to this one's (and its dead pids' gauges).
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


def service_port(service: str) -> str:
    """The port of a split service: ``<SERVICE>_SERVICE_PORT``, else the seed's (8081-8084)."""
    return os.environ.get(f"{service.upper()}_SERVICE_PORT") or str(services.DEFAULT_PORTS[service])


def service_database_url(service: str, database_url: str) -> str:
    """``DATABASE_URL`` as the service's role (``oms_<service>``, no password: the local server
    trusts loopback); ``<SERVICE>_DATABASE_URL`` replaces it entirely."""
    own = os.environ.get(f"{service.upper()}_DATABASE_URL")
    if own:
        return own
    parts = urlsplit(database_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{services.role_of(service)}@{host}"))


def split_processes(*, python: str, host: str, metrics_root: Path) -> list[ProcessSpec]:
    """The four services of ``make split``, each with its own process set and environment."""
    database_url = os.environ.get("DATABASE_URL", "")
    urls = {
        f"{name.upper()}_SERVICE_URL": os.environ.get(f"{name.upper()}_SERVICE_URL")
        or f"http://127.0.0.1:{service_port(name)}"
        for name in services.DEFAULT_PORTS
    }
    specs: list[ProcessSpec] = []
    for service in services.DEFAULT_PORTS:
        env = {
            **urls,
            "OMS_SERVICE": service,
            "PORT": service_port(service),
            "DATABASE_URL": service_database_url(service, database_url),
            # Each service's /metrics sums its own processes only.
            "PROMETHEUS_MULTIPROC_DIR": str(prepare_metrics_dir(metrics_root / service)),
        }
        for spec in stack_processes(
            python=python,
            host=host,
            port=env["PORT"],
            service=service,
            web_workers=os.environ.get("SPLIT_WEB_CONCURRENCY", "1"),
        ):
            specs.append(ProcessSpec(f"{service}-{spec.name}", spec.argv, {**spec.env, **env}))
    return specs


def main(argv: list[str] | None = None) -> int:
    split = "--split" in (sys.argv[1:] if argv is None else argv)
    (ROOT / "var").mkdir(exist_ok=True)
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or str(ROOT / "var" / "prometheus-multiproc")
    # Loopback for `make stack`; a container sets WEB_HOST=0.0.0.0.
    host = os.environ.get("WEB_HOST") or "127.0.0.1"
    if split:
        specs = split_processes(
            python=sys.executable, host=host, metrics_root=prepare_metrics_dir(Path(metrics_dir))
        )
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prepare_metrics_dir(Path(metrics_dir)))
        specs = stack_processes(python=sys.executable, host=host, port=os.environ.get("PORT") or "8000")
    supervisor = Supervisor(specs)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
