"""``make chaos``: every scenario on a fresh stack, then one table of what was lost.

    python -m chaos                         # the full suite: 300 orders at ~20/s per scenario
    python -m chaos --short                 # 4 scenarios, 40 orders each (the test suite runs it)
    python -m chaos --scenarios consumer_kill,power_cut --orders 100

Per scenario: a copy of a migrated, seeded template database; an emptied vhost and Redis db;
the stack's processes (those of deploy/run_stack.py, each in its own process group); a token
for alice and bob; the load (chaos/load.py: mixed card tokens incl. ``tok_late``, ~10 %
cancelled) while the scenario's fault runs (chaos/faults.py); the settle wait; the audit
(chaos/audit.py) and ``manage.py audit_money --json`` when it exists. The report goes to
``chaos/results/<timestamp>.md`` and ``.json`` and to stdout; the exit code is 1 when any loss
column of any scenario is non-zero (or a scenario could not run), else 0.

The chaos stack's settings (chaos/stack.py ``STACK_SETTINGS``): SAGA_TIMEOUT=30,
SAGA_STEP_TIMEOUT=10, PAYMENT_TIMEOUT=1, PAYMENT_RESUME_AFTER=3,
CONSUMER_RETRY_DELAYS=0.5,1,2,4, RELAY_CLAIM_SECONDS=3, PAYMENT_RECONCILE_EVERY=5, throttling off,
DEBUG off.

Environment: CHAOS_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/oms_chaos),
CHAOS_BROKER_URL (amqp://guest:guest@127.0.0.1:5672/oms_chaos), CHAOS_REDIS_URL
(redis://127.0.0.1:6379/10), CHAOS_PORT (8765).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import audit, faults
from .load import Api, Load, Plan, mixed_plan
from .stack import (
    LOGS,
    ROOT,
    STACK_SETTINGS,
    ChaosConfig,
    ChaosStack,
    TcpProxy,
    drop_databases,
    fresh_state,
    log,
    prepare_template,
)

RESULTS = ROOT / "chaos" / "results"


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    fault: Callable[[faults.FaultContext], None]
    brownout: bool = False
    # Environment overrides of single processes (by deploy/run_stack.py name).
    overrides: dict[str, dict[str, str]] | None = None


SCENARIOS = [
    Scenario("baseline", "no fault (control)", faults.no_fault),
    Scenario("consumer_kill", "consumer SIGKILLed mid-saga, restarted", faults.consumer_kills),
    Scenario(
        "relay_kill",
        "relay SIGKILLed between publish and mark",
        faults.relay_kills,
        # Every row goes through the relay here (no process publishes its own rows after commit),
        # so the kills land between the relay's publish and its mark.
        overrides={
            **{name: {"OUTBOX_PUBLISH_ON_COMMIT": "0"} for name in ("web", "consumers", "worker", "beat")},
            "relay": {
                "DJANGO_SETTINGS_MODULE": "config.settings.test",
                "RELAY_PAUSE_AFTER_PUBLISH": "0.3",
                "OUTBOX_PUBLISH_ON_COMMIT": "0",
                "RELAY_MIN_AGE_SECONDS": "0",
            },
        },
    ),
    Scenario("broker_restart", "RabbitMQ stop_app / start_app under load", faults.broker_restarts),
    Scenario("pg_terminate", "PostgreSQL backends terminated under load", faults.backend_terminations),
    Scenario("redis_outage", "Redis gone and back empty under load", faults.redis_outages),
    Scenario(
        "gateway_brownout", "burst of tok_slow / tok_late / tok_gateway_down", faults.no_fault, brownout=True
    ),
    Scenario("power_cut", "every process SIGKILLed at once, restarted", faults.power_cuts),
]
SHORT = ("consumer_kill", "broker_restart", "pg_terminate", "power_cut")

COLUMNS = [
    ("scenario", "scenario"),
    ("accepted", "accepted"),
    ("lost", "lost"),
    ("stuck", "stuck"),
    ("double_captures", "double captures"),
    ("kept_captures", "kept captures"),
    ("stock_violations", "stock violations"),
    ("money_mismatches", "money mismatches"),
    ("dead_letters", "dead letters"),
    ("audit_money", "audit_money"),
    ("seconds_to_settle", "time to settle (s)"),
    ("faults", "faults injected"),
]


def run_scenario(
    scenario: Scenario,
    cfg: ChaosConfig,
    proxy: TcpProxy,
    received: dict[str, int],
    args: argparse.Namespace,
    run_id: str,
    abort: threading.Event,
) -> dict[str, Any]:
    log(f"--- {scenario.name}: {scenario.title}")
    rng = random.Random(f"{args.seed}-{scenario.name}")
    stack = ChaosStack(cfg, LOGS / run_id / scenario.name, overrides=scenario.overrides)
    result: dict[str, Any] = {"scenario": scenario.name, "title": scenario.title}
    fault_thread: threading.Thread | None = None
    ctx: faults.FaultContext | None = None
    try:
        fresh_state(cfg)
        result["startup_seconds"] = round(stack.start(), 1)
        api = Api(cfg.port)
        access = {user: api.token(user, cfg.password) for user in ("alice", "bob")}
        plan: Plan = mixed_plan(
            args.orders, args.rate, rng, brownout=(0.3, 0.6, 2 * args.rate) if scenario.brownout else None
        )
        load = Load(api, plan, access, run_id=f"{run_id}-{scenario.name}")
        ctx = faults.FaultContext(
            cfg=cfg,
            stack=stack,
            proxy=proxy,
            load=load,
            count=len(plan.orders),
            short=args.short,
            load_done=threading.Event(),
            abort=abort,
            rng=rng,
        )
        fault_thread = threading.Thread(target=_guarded(scenario.fault, ctx), name=f"fault-{scenario.name}")
        started = time.monotonic()
        fault_thread.start()
        results = load.run()
        ctx.load_done.set()
        result["load_seconds"] = round(time.monotonic() - started, 1)
        fault_thread.join()
        result["fault_seconds"] = round(time.monotonic() - started, 1)
        log(f"{scenario.name}: load and fault done ({ctx.stats.get('faults')}); settling")
        settle = audit.settle(
            cfg,
            max_seconds=args.settle_max,
            stall_seconds=args.stall,
            quiet_seconds=args.quiet,
        )
        checked = audit.audit(cfg, results, received)
        money = audit.audit_money(cfg)
        result.update(checked["row"])
        result.update(settle)
        result["faults"] = ctx.stats.get("faults", "")
        result["fault_stats"] = {k: v for k, v in ctx.stats.items() if k != "faults"}
        result["unplanned_restarts"] = stack.unplanned_restarts
        result["details"] = checked["details"]
        result["audit_money_result"] = money
        result["audit_money"] = _audit_money_cell(money)
        if not settle["settled"]:
            result["seconds_to_settle"] = None
    except Exception as exc:  # noqa: BLE001 - a scenario that cannot run is reported, then the next one
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
        log(f"{scenario.name} failed: {result['error']}")
        if ctx is not None:
            ctx.load_done.set()
        if fault_thread is not None:
            fault_thread.join()
    finally:
        stack.stop()
    result["logs"] = str(stack.log_dir)
    return result


def _guarded(fault: Callable[[faults.FaultContext], None], ctx: faults.FaultContext) -> Callable[[], None]:
    def run() -> None:
        try:
            fault(ctx)
        except Exception as exc:  # noqa: BLE001 - reported in the row
            ctx.stats["faults"] = f"fault failed: {type(exc).__name__}: {exc}"
            log(traceback.format_exc())

    return run


def _audit_money_cell(money: dict[str, Any]) -> str:
    """``ok``, ``n/a`` (no such command yet) or ``FAIL`` with the discrepancies by kind."""
    if not money.get("available"):
        return "n/a"
    if money["exit_code"] == 0:
        return "ok"
    report = money.get("report")
    if isinstance(report, dict) and isinstance(report.get("by_kind"), dict):
        kinds = ", ".join(f"{kind} {n}" for kind, n in report["by_kind"].items() if n)
        return f"FAIL ({kinds})"
    return f"FAIL (exit {money['exit_code']})"


def losses(row: dict[str, Any]) -> list[str]:
    """The loss columns of a row that are not zero (or the reason the row is no measurement)."""
    if "error" in row:
        return [f"error: {row['error']}"]
    found = [f"{name}={row[name]}" for name in audit.LOSS_COLUMNS if row.get(name)]
    if str(row.get("audit_money", "")).startswith("FAIL"):
        found.append(f"audit_money {row['audit_money']}")
    return found


def render(report: dict[str, Any]) -> str:
    lines = [
        f"# Chaos run {report['started_at']}",
        "",
        f"{report['config']['orders']} orders per scenario at ~{report['config']['rate']}/s "
        f"({'short' if report['config']['short'] else 'full'} run, {report['config']['cpus']} CPUs, "
        f"load average at start {report['config']['load_average']}); stack settings: "
        + ", ".join(
            f"{k}={v}"
            for k, v in report["config"]["stack_settings"].items()
            if k.startswith(("SAGA", "PAYMENT", "CONSUMER", "RELAY"))
        ),
        "",
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for row in report["scenarios"]:
        if "error" in row:
            lines.append(
                f"| {row['scenario']} | "
                + " | ".join("-" for _ in COLUMNS[1:-1])
                + f" | ERROR: {row['error']} |"
            )
            continue
        cells = []
        for key, _ in COLUMNS:
            value = row.get(key)
            cells.append("not settled" if key == "seconds_to_settle" and value is None else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Outcomes (orders in the database, by final status) and FAILED reasons:", ""]
    for row in report["scenarios"]:
        if "error" in row:
            continue
        restarts = row.get("unplanned_restarts") or []
        extra = (
            f"; processes that exited on their own and were restarted: {_restarts(restarts)}"
            if restarts
            else ""
        )
        lines.append(
            f"- **{row['scenario']}**: {row['outcomes']}, reasons {row['failure_reasons']}; "
            f"{row['not_accepted']} never accepted{_answers(row['not_accepted_last_answers'])}, "
            f"{row['post_retries']} POST retries; cancels "
            f"{row['cancels_202']}/{row['cancels_sent']} accepted "
            f"({row['cancel_202_not_cancelled']} of those not CANCELLED); "
            f"startup {row['startup_seconds']} s, load {row['load_seconds']} s{extra}"
        )
    failing = [(row["scenario"], losses(row)) for row in report["scenarios"] if losses(row)]
    if "error" in report:
        failing.append(("run", [f"error: {report['error']}"]))
    lost = any(not found[0].startswith("error:") for _, found in failing)
    verdict = "**no loss**"
    if failing:
        verdict = "**LOSSES**" if lost else "**INCOMPLETE** (a scenario could not run)"
    lines += ["", f"Verdict: {verdict}", ""]
    for name, found in failing:
        lines.append(f"- {name}: {', '.join(found)}")
    lines.append("")
    return "\n".join(lines)


def _answers(answers: dict[str, int]) -> str:
    return f" (last answers {answers})" if answers else ""


def _restarts(restarts: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for item in restarts:
        counts[item["process"]] = counts.get(item["process"], 0) + 1
    return ", ".join(f"{name} x{n}" for name, n in counts.items())


def write_report(report: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = report["started_at"].replace(":", "").replace("-", "")
    text = render(report)
    for name, content in (
        (f"{stamp}.json", json.dumps(report, indent=2, default=str)),
        (f"{stamp}.md", text),
    ):
        with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, suffix=".tmp") as tmp:
            tmp.write(content)
        os.chmod(tmp.name, 0o644)
        os.replace(tmp.name, directory / name)
    print(text, flush=True)
    log(f"written to {directory}/{stamp}.md and .json")
    return directory / f"{stamp}.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help=f"only {', '.join(SHORT)}, 40 orders each")
    parser.add_argument("--scenarios", help="comma-separated scenario names (default: all, or the short set)")
    parser.add_argument("--orders", type=int, help="orders per scenario (300; 40 with --short)")
    parser.add_argument("--rate", type=float, default=20.0, help="orders per second (20)")
    parser.add_argument("--seed", default="chaos", help="random seed of the load")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    parser.add_argument("--settle-max", type=float, help="longest settle wait in s (240; 90 with --short)")
    parser.add_argument(
        "--stall", type=float, help="give up when nothing changed for s (90; 45 with --short)"
    )
    parser.add_argument("--quiet", type=float, help="quiet spell before the audit, s (8; 6 with --short)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change a setting of the chaos stack, e.g. --set PAYMENT_RECONCILE_EVERY=3600",
    )
    parser.add_argument("--keep-db", action="store_true", help="keep the last scenario's database")
    args = parser.parse_args(argv)
    args.orders = args.orders or (40 if args.short else 300)
    args.settle_max = args.settle_max or (90.0 if args.short else 240.0)
    args.stall = args.stall or (45.0 if args.short else 90.0)
    args.quiet = args.quiet or (6.0 if args.short else 8.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = (
        args.scenarios.split(",")
        if args.scenarios
        else (list(SHORT) if args.short else [s.name for s in SCENARIOS])
    )
    by_name = {s.name: s for s in SCENARIOS}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SystemExit(f"unknown scenarios {unknown}; known: {', '.join(by_name)}")
    cfg = ChaosConfig()
    cfg.settings_overrides = dict(item.split("=", 1) for item in args.set)
    started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    run_id = started_at.replace(":", "").replace("-", "")
    abort = threading.Event()

    def on_term(signum: int, frame: object) -> None:
        abort.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    proxy = TcpProxy(cfg.redis_host_port)
    cfg.redis_proxy_port = proxy.up()
    began = time.monotonic()
    report: dict[str, Any] = {
        "started_at": started_at,
        "config": {
            "short": args.short,
            "orders": args.orders,
            "rate": args.rate,
            "seed": args.seed,
            "cpus": os.cpu_count(),
            "load_average": " ".join(f"{v:.2f}" for v in os.getloadavg()),
            "database": cfg.database,
            "vhost": cfg.vhost,
            "redis": cfg.redis_url,
            "stack_settings": {**STACK_SETTINGS, **cfg.settings_overrides},
            "audit_money": audit.audit_money_available(),
        },
        "scenarios": [],
    }
    try:
        log(f"preparing {cfg.template} (migrate, seed_demo)")
        received = prepare_template(cfg)
        for name in names:
            report["scenarios"].append(run_scenario(by_name[name], cfg, proxy, received, args, run_id, abort))
    except KeyboardInterrupt:
        abort.set()
        log("interrupted: reporting what ran")
    except Exception as exc:  # noqa: BLE001 - the rows measured so far are still reported
        report["error"] = f"{type(exc).__name__}: {exc}"
        log(traceback.format_exc())
    finally:
        proxy.down()
        if not args.keep_db:
            try:
                drop_databases(cfg)
            except Exception as exc:  # noqa: BLE001 - reported, the report matters more
                log(f"could not drop the chaos databases: {exc}")
        report["total_seconds"] = round(time.monotonic() - began, 1)
        write_report(report, args.results_dir)
    failing = [row for row in report["scenarios"] if losses(row)]
    if abort.is_set() or "error" in report or len(report["scenarios"]) < len(names):
        return 2
    return 1 if failing else 0
