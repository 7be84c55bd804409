"""The faults: each runs on its own thread while the load runs, and returns what it did.

Every fault that takes a shared service away (RabbitMQ) keeps the outage short and restores
it in a ``finally`` block; the Redis outage is the stack's Redis proxy going away, not the
shared server; PostgreSQL is never stopped — only the backends of the scenario's own
database are terminated.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from .load import Load
from .stack import ChaosConfig, ChaosStack, TcpProxy, log


@dataclass
class FaultContext:
    cfg: ChaosConfig
    stack: ChaosStack
    proxy: TcpProxy
    load: Load
    count: int  # orders in the plan
    short: bool
    load_done: threading.Event
    abort: threading.Event
    rng: random.Random
    stats: dict[str, Any] = field(default_factory=dict)

    def wait(self, seconds: float) -> bool:
        """Sleep; True when the run is being aborted."""
        return self.abort.wait(seconds)

    def wait_sent(self, fraction: float) -> bool:
        """Wait until ``fraction`` of the plan's orders were sent; True when aborted."""
        while self.load.sent < fraction * self.count and not self.load_done.is_set():
            if self.abort.wait(0.05):
                return True
        return False

    def open_sagas(self) -> int:
        try:
            with self.cfg.connect() as db:
                row = db.execute(
                    "SELECT count(*) FROM saga_instance "
                    "WHERE state NOT IN ('COMPLETED', 'COMPENSATED', 'FAILED')"
                ).fetchone()
        except Exception:  # noqa: BLE001 - best effort: only for the report
            return -1
        return int(row[0]) if row else 0


def no_fault(ctx: FaultContext) -> None:
    ctx.stats["faults"] = "none"


def consumer_kills(ctx: FaultContext) -> None:
    """SIGKILL the consumer processes (all of them, together) each time they have been consuming
    for a moment, then restart them."""
    wanted = 4 if ctx.short else 20
    kills = mid_saga = 0
    deadline = time.monotonic() + (60 if ctx.short else 200)
    names = ctx.stack.consumers
    since = {name: ctx.stack.procs[name].log_count('"consuming ') - 1 for name in names}
    while kills < wanted and time.monotonic() < deadline and not ctx.abort.is_set():
        if not all(ctx.stack.wait_process_ready(name, since[name], timeout=60) for name in names):
            log("a consumer did not come back within 60 s")
            break
        if ctx.wait(ctx.rng.uniform(0.3, 1.0 if ctx.short else 1.5)):
            break
        open_now = ctx.open_sagas()
        since = {name: ctx.stack.procs[name].log_count('"consuming ') for name in names}
        ctx.stack.kill_and_restart(*names)
        kills += 1
        mid_saga += open_now > 0
    ctx.stats.update({"kills": kills, "mid_saga_kills": mid_saga})
    ctx.stats["faults"] = f"{kills} SIGKILLs of every consumer process ({mid_saga} with sagas open)"


def relay_kills(ctx: FaultContext) -> None:
    """SIGKILL the relay between publishing a batch and marking it sent, then restart it.

    The relay of this scenario runs with ``config.settings.test``, whose test hook
    ``RELAY_PAUSE_AFTER_PUBLISH`` (0.3 s) widens that window; a kill is "in the window" when
    rows it claimed were still unmarked right after it died.
    """
    wanted = 3 if ctx.short else 12
    kills = in_window = 0
    deadline = time.monotonic() + (60 if ctx.short else 150)
    proc = ctx.stack.procs["relay"]
    since = proc.log_count('"relay running"') - 1
    with ctx.cfg.connect() as db:
        while kills < wanted and time.monotonic() < deadline and not ctx.abort.is_set():
            if not ctx.stack.wait_process_ready("relay", since, timeout=60):
                break
            if ctx.wait(ctx.rng.uniform(0.2, 1.0)):
                break
            # Wait for claimed rows that are not marked sent yet (the relay is inside its window).
            window_deadline = time.monotonic() + 10
            while time.monotonic() < window_deadline and not _unmarked(db):
                time.sleep(0.01)
            since = proc.log_count('"relay running"')
            ctx.stack.kill("relay")
            in_window += _unmarked(db) > 0
            kills += 1
            ctx.stack.restart("relay")
    ctx.stats.update({"kills": kills, "kills_in_window": in_window})
    ctx.stats["faults"] = f"{kills} relay SIGKILLs ({in_window} between publish and mark)"


def _unmarked(db: Any) -> int:
    row = db.execute(
        "SELECT count(*) FROM event_outbox WHERE sent_at IS NULL AND claimed_until > now()"
    ).fetchone()
    return int(row[0]) if row else 0


def broker_restarts(ctx: FaultContext) -> None:
    """``rabbitmqctl stop_app``, a few seconds, ``start_app`` (always), at points of the load."""
    points = (0.4,) if ctx.short else (0.3, 0.7)
    outages = []
    for point in points:
        if ctx.wait_sent(point):
            break
        started = time.monotonic()
        try:
            subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, capture_output=True, timeout=30)
            ctx.wait(2.0)
        finally:
            subprocess.run(["rabbitmqctl", "-q", "start_app"], check=False, capture_output=True, timeout=60)
            outages.append(round(time.monotonic() - started, 1))
            log(f"RabbitMQ back after {outages[-1]} s")
    ctx.stats["outages_s"] = outages
    ctx.stats["faults"] = f"{len(outages)} RabbitMQ restarts ({', '.join(f'{o} s' for o in outages)} down)"


def backend_terminations(ctx: FaultContext) -> None:
    """``pg_terminate_backend`` on every connection to the scenario's database, every ~second."""
    rounds = terminated = 0
    with ctx.cfg.connect() as db:
        while not ctx.load_done.is_set() and not ctx.abort.is_set():
            if ctx.wait(ctx.rng.uniform(0.6, 1.4)):
                break
            rows = db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                [ctx.cfg.database],
            ).fetchall()
            rounds += 1
            terminated += sum(1 for (ok,) in rows if ok)
    ctx.stats.update({"rounds": rounds, "terminated": terminated})
    ctx.stats["faults"] = f"{rounds} rounds, {terminated} backends terminated"


def redis_outages(ctx: FaultContext) -> None:
    """The stack's Redis goes away for a few seconds and comes back empty (no persistence)."""
    points = (0.3, 0.7)
    outages = []
    host, port = ctx.cfg.redis_host_port
    for point in points:
        if ctx.wait_sent(point):
            break
        started = time.monotonic()
        ctx.proxy.down()
        try:
            # The local Redis runs without persistence: a restart loses the breaker state and
            # the cache; so does this one (only the stack's db).
            redis.Redis(host=host, port=port, db=ctx.cfg.redis_db, socket_timeout=5).flushdb()
            ctx.wait(5.0)
        finally:
            ctx.proxy.up()
            outages.append(round(time.monotonic() - started, 1))
    ctx.stats["outages_s"] = outages
    ctx.stats["faults"] = f"{len(outages)} Redis outages ({', '.join(f'{o} s' for o in outages)}), emptied"


def power_cuts(ctx: FaultContext) -> None:
    """Every process of the stack SIGKILLed at once; all restarted on the same database and broker."""
    points = (0.3,) if ctx.short else (0.35, 0.75)
    cuts = 0
    names = list(ctx.stack.procs)
    for point in points:
        if ctx.wait_sent(point):
            break
        open_now = ctx.open_sagas()
        ctx.stack.kill(*names)
        cuts += 1
        log(f"power cut {cuts}: every process killed ({open_now} sagas open)")
        try:
            ctx.wait(1.0)
        finally:
            ctx.stack.restart(*names)
    ctx.stats["cuts"] = cuts
    ctx.stats["faults"] = f"{cuts} power cuts (all {len(names)} processes SIGKILLed together)"
