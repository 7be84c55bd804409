"""Pure helpers of the harness: percentiles, parsing wrk/pgbench output, ratios, the report.

Nothing here touches a process, a socket or the clock, so tests/bench checks it quickly.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

WRK_MARKER = "BENCH_WRK_JSON "
PERCENTILES = (50, 95, 99)

_UNIT_TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_WRK_LATENCY_LINE = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s+(\d+(?:\.\d+)?)(us|ms|s|m)\s*$")


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The ``pct`` percentile of ``values`` by linear interpolation between ranks; None if empty."""
    if not values:
        return None
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} is outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarise_latencies(values_ms: Sequence[float]) -> dict[str, float | int | None]:
    """count, mean, p50/p95/p99 and max of latencies in milliseconds (rounded to 0.1 ms)."""
    if not values_ms:
        return {"count": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    summary: dict[str, float | int | None] = {
        "count": len(values_ms),
        "mean": round(sum(values_ms) / len(values_ms), 1),
    }
    for pct in PERCENTILES:
        value = percentile(values_ms, pct)
        summary[f"p{pct}"] = None if value is None else round(value, 1)
    summary["max"] = round(max(values_ms), 1)
    return summary


def parse_wrk_json(output: str) -> dict[str, Any]:
    """The summary our Lua ``done()`` prints (one line, after :data:`WRK_MARKER`).

    Adds ``ok`` (2xx responses), ``errors`` (non-2xx plus socket errors and timeouts) and
    ``ok_per_second``. Raises ValueError when the line is missing (wrk failed before done()).
    """
    for line in output.splitlines():
        if line.startswith(WRK_MARKER):
            data: dict[str, Any] = json.loads(line[len(WRK_MARKER) :])
            break
    else:
        raise ValueError("wrk printed no summary line (did the Lua script run?)")
    statuses = {int(code): int(count) for code, count in data.get("statuses", {}).items()}
    ok = sum(count for code, count in statuses.items() if 200 <= code < 300)
    socket_errors = sum(int(v) for v in data.get("socket_errors", {}).values())
    seconds = data["duration_us"] / 1e6
    data["statuses"] = statuses
    data["ok"] = ok
    data["non_2xx"] = sum(statuses.values()) - ok
    data["errors"] = data["non_2xx"] + socket_errors
    data["seconds"] = round(seconds, 3)
    data["ok_per_second"] = round(ok / seconds, 1) if seconds > 0 else 0.0
    return data


def parse_wrk_text(output: str) -> dict[str, Any]:
    """wrk's own text report (``--latency``): requests/s, latency percentiles in ms, non-2xx/3xx."""
    result: dict[str, Any] = {"latency_ms": {}}
    for line in output.splitlines():
        match = _WRK_LATENCY_LINE.match(line)
        if match:
            pct, value, unit = match.groups()
            result["latency_ms"][f"p{float(pct):g}"] = round(float(value) * _UNIT_TO_MS[unit], 3)
        elif line.startswith("Requests/sec:"):
            result["requests_per_second"] = float(line.split(":", 1)[1])
        elif "Non-2xx or 3xx responses:" in line:
            result["non_2xx_3xx"] = int(line.rsplit(":", 1)[1])
        elif re.match(r"^\s*\d+ requests in ", line):
            result["requests"] = int(line.split()[0])
    return result


def parse_pgbench(output: str) -> dict[str, float | int | None]:
    """tps (without connection time), average latency (ms) and failed transactions of pgbench."""
    tps = re.search(r"^tps = ([\d.]+) \(without initial connection time\)", output, re.M)
    latency = re.search(r"^latency average = ([\d.]+) ms", output, re.M)
    stddev = re.search(r"^latency stddev = ([\d.]+) ms", output, re.M)
    processed = re.search(r"^number of transactions actually processed: (\d+)", output, re.M)
    failed = re.search(r"^number of failed transactions: (\d+)", output, re.M)
    if tps is None:
        raise ValueError("pgbench printed no tps line")
    return {
        "tps": float(tps.group(1)),
        "latency_avg_ms": float(latency.group(1)) if latency else None,
        "latency_stddev_ms": float(stddev.group(1)) if stddev else None,
        "transactions": int(processed.group(1)) if processed else None,
        "failed": int(failed.group(1)) if failed else 0,
    }


def rss_kib(status_text: str) -> int | None:
    """VmRSS in KiB from the text of ``/proc/<pid>/status`` (None for a kernel thread or zombie)."""
    match = re.search(r"^VmRSS:\s+(\d+) kB", status_text, re.M)
    return int(match.group(1)) if match else None


def pss_kib(smaps_rollup_text: str) -> int | None:
    """Pss in KiB from the text of ``/proc/<pid>/smaps_rollup``: the process's resident pages,
    each page it shares with N processes counted as 1/N (so a sum over processes counts a
    shared library once, where a sum of RSS counts it in every process)."""
    match = re.search(r"^Pss:\s+(\d+) kB", smaps_rollup_text, re.M)
    return int(match.group(1)) if match else None


def cpu_ticks(stat_text: str) -> tuple[int, int]:
    """(all ticks, stolen ticks) of the whole machine from the ``cpu`` line of ``/proc/stat``."""
    fields = [int(v) for v in stat_text.splitlines()[0].split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice: guests are in user already.
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


def stolen_percent(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of the machine's CPU time the hypervisor gave to other guests between two
    :func:`cpu_ticks` readings, in % (None when either is missing): time the run waited for."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    return round(100 * (after[1] - before[1]) / (after[0] - before[0]), 1)


INTAKE_COUNTERS = {"held": "oms_orders_held_total", "refused": "oms_orders_refused_busy_total"}


def intake_counters(metrics_text: str) -> dict[str, float]:
    """The intake's bound counters from a ``/metrics`` text: placements held, and refused."""
    values = dict.fromkeys(INTAKE_COUNTERS, 0.0)
    for line in metrics_text.splitlines():
        name, _, value = line.partition(" ")
        for key, metric in INTAKE_COUNTERS.items():
            if name == metric:
                values[key] = float(value)
    return values


def counted_between(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, int] | None:
    """What each counter of :func:`intake_counters` counted between two readings (None if one is missing)."""
    if before is None or after is None:
        return None
    return {key: round(after[key] - before[key]) for key in after}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` to two decimals; None when either is missing or the
    denominator is zero (a zero numerator is a ratio of 0: nothing completed is a figure)."""
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 2)


def per_second_buckets(epoch_seconds: Sequence[float]) -> list[int]:
    """How many timestamps fall in each whole second from the first to the last."""
    if not epoch_seconds:
        return []
    start = math.floor(min(epoch_seconds))
    counts = [0] * (math.floor(max(epoch_seconds)) - start + 1)
    for value in epoch_seconds:
        counts[math.floor(value) - start] += 1
    return counts


SHAPES = {
    "spread": "orders spread over the demo products in turn",
    "hot": "every order for one hot product (a flash sale)",
}
FULL_RUN_SECONDS = 30
FULL_RUN_E2E_SECONDS = 60.0
DURABLE_SYNCHRONOUS_COMMIT = ("on", "remote_write", "remote_apply", "local")


def parse_shapes(text: str) -> list[str]:
    """``BENCH_SHAPES`` (comma-separated) as a list of known shapes, in the order given."""
    shapes = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [shape for shape in shapes if shape not in SHAPES]
    if unknown or not shapes:
        raise ValueError(f"unknown load shape(s) {unknown or text!r}: choose from {', '.join(SHAPES)}")
    return list(dict.fromkeys(shapes))


def shape_products(shape: str, products: Sequence[str]) -> list[str]:
    """The products the orders of a shape are for (the Lua script takes them in turn)."""
    if shape == "hot":
        return [products[0]]
    if shape == "spread":
        return list(products)
    raise ValueError(f"unknown load shape {shape!r}")


def default_e2e_seconds(seconds: float) -> float:
    """The sustained end-to-end phase: 60 s in a full run, as short as the others in a quick one."""
    return FULL_RUN_E2E_SECONDS if seconds >= FULL_RUN_SECONDS else seconds


def durability_problems(settings: dict[str, str]) -> list[str]:
    """Why these PostgreSQL settings would make the figures meaningless (empty when durable)."""
    problems = []
    if settings.get("synchronous_commit") not in DURABLE_SYNCHRONOUS_COMMIT:
        problems.append(f"synchronous_commit is {settings.get('synchronous_commit')!r}: it must stay on")
    if settings.get("fsync") != "on":
        problems.append(f"fsync is {settings.get('fsync')!r}: it must stay on")
    return problems


def rows_written(counters: dict[str, Any]) -> int:
    """Rows inserted, updated and deleted in a ``db_counters`` snapshot."""
    return int(counters["inserted"]) + int(counters["updated"]) + int(counters["deleted"])


def per_order_costs(
    before: dict[str, Any], after: dict[str, Any], completed: int, *, top: int = 8
) -> dict[str, Any]:
    """What the database did per completed order between two ``db_counters`` snapshots.

    Everything the stack did in between counts (background tasks too): that is the cost of an
    order at this rate. Statements are None unless both snapshots have them.
    """

    def per(value: float | None) -> float | None:
        return None if value is None or completed <= 0 else round(value / completed, 2)

    delta = {key: int(after[key]) - int(before[key]) for key in ("commits", "inserted", "updated", "deleted")}
    written = rows_written(after) - rows_written(before)
    statements = None
    if before.get("statements") is not None and after.get("statements") is not None:
        statements = int(after["statements"]) - int(before["statements"])
    empty = {"written": 0, "scans": 0}
    tables = {
        name: {key: counts[key] - before["tables"].get(name, empty)[key] for key in ("written", "scans")}
        for name, counts in after["tables"].items()
    }
    scans = sum(t["scans"] for t in tables.values())
    active_ms = float(after.get("active_ms", 0.0)) - float(before.get("active_ms", 0.0))
    busiest = sorted(
        ((name, t["written"]) for name, t in tables.items() if t["written"] > 0),
        key=lambda item: (-item[1], item[0]),
    )[:top]
    return {
        "completed_orders": completed,
        "totals": {
            **delta,
            "rows_written": written,
            "scans": scans,
            "statements": statements,
            "active_ms": round(active_ms, 1),
        },
        "commits": per(delta["commits"]),
        "rows_inserted": per(delta["inserted"]),
        "rows_updated": per(delta["updated"]),
        "rows_deleted": per(delta["deleted"]),
        "rows_written": per(written),
        "table_scans": per(scans),
        "statements": per(statements),
        "postgres_active_ms": per(active_ms),
        "rows_written_by_table": {name: per(count) for name, count in busiest},
    }


def shape_ratios(
    shapes: dict[str, dict[str, Any]], pgbench_tps: float | None, peer_per_second: float | None
) -> dict[str, Any]:
    """Each shape's accepted and completed rates over pgbench (and the peer); hot over spread.

    Completed, two ways: inside the load window (the floor's reading: what the pipeline sustains
    while orders keep coming) and overall (the phase's orders over the time from the first one
    created to the last one completed, drain included: the pipeline's capacity when a backlog
    starves the window). Hot over spread compares the capacities, the overall rates.
    """
    ratios: dict[str, Any] = {}
    for name, result in shapes.items():
        accepted = (result.get("accepted") or {}).get("ok_per_second")
        e2e = result.get("end_to_end") or {}
        ratios[name] = {
            "accepted_over_pgbench": ratio(accepted, pgbench_tps),
            "completed_over_pgbench": ratio(e2e.get("completed_per_second_in_window"), pgbench_tps),
            "completed_overall_over_pgbench": ratio(e2e.get("completed_per_second_overall"), pgbench_tps),
            "accepted_over_peer": ratio(accepted, peer_per_second),
        }
    if "hot" in shapes and "spread" in shapes:
        ratios["hot_over_spread_completed"] = ratio(
            (shapes["hot"].get("end_to_end") or {}).get("completed_per_second_overall"),
            (shapes["spread"].get("end_to_end") or {}).get("completed_per_second_overall"),
        )
    return ratios


def _fmt(value: Any, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.1f}{suffix}"
    if isinstance(value, int):
        return f"{value:,}{suffix}"
    return f"{value}{suffix}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _latencies(summary: dict[str, Any]) -> list[str]:
    return [_fmt(summary.get(key)) for key in ("p50", "p95", "p99", "max")]


def _shape_table(result: dict[str, Any]) -> list[str]:
    """One table per shape: the accepted phase, then end to end after it and sustained."""
    header = (
        "phase",
        "offered /s",
        "2xx /s",
        "completed /s (load window)",
        "latency of",
        "P50 ms",
        "P95 ms",
        "P99 ms",
        "max ms",
        "errors (non-2xx + socket)",
        "created",
        "completed",
        "lost or stuck",
    )
    acc = result.get("accepted") or {}
    lines = [
        _row(header),
        _row(["---"] * len(header)),
        _row(
            [
                "accepted (closed loop)",
                "",
                _fmt(acc.get("ok_per_second")),
                "",
                "request → 202",
                *_latencies(acc.get("latency_ms") or {}),
                _fmt(acc.get("errors")),
                "",
                "",
                "",
            ]
        ),
    ]
    phases = (("end_to_end_burst", "end to end, the accepted burst"), ("end_to_end", "end to end, sustained"))
    for key, title in phases:
        e2e = result.get(key)
        if not e2e:
            continue
        lines.append(
            _row(
                [
                    title,
                    _fmt(e2e.get("offered_per_second")),
                    "",
                    _fmt(e2e.get("completed_per_second_in_window")),
                    "202 → COMPLETED",
                    *_latencies(e2e.get("created_to_completed_ms") or {}),
                    _fmt(e2e["errors"]) if "errors" in e2e else "",
                    _fmt(e2e.get("created")),
                    _fmt(e2e.get("completed")),
                    f"**{_fmt(e2e.get('lost_or_stuck'))}**",
                ]
            )
        )
    return lines


def _shape_section(name: str, result: dict[str, Any], ratios: dict[str, Any]) -> list[str]:
    products = result.get("products")
    counted = f"{_fmt(products)} product{'' if products == 1 else 's'}"
    lines = [
        f"## Shape `{name}` ({counted}): {SHAPES.get(name, name)}",
        "",
        *_shape_table(result),
    ]
    acc = result.get("accepted") or {}
    if acc.get("statuses"):
        lines += ["", "Status codes: " + ", ".join(f"{k}: {v}" for k, v in sorted(acc["statuses"].items()))]
    notes = []
    for key, title in (("end_to_end_burst", "After the burst"), ("end_to_end", "sustained")):
        e2e = result.get(key) or {}
        if e2e:
            notes.append(
                f"{title}: drained in {_fmt(e2e.get('drain_seconds'), ' s')}, "
                f"{_fmt(e2e.get('other_terminal'))} other terminal, "
                f"{_fmt(e2e.get('not_terminal'))} not terminal, "
                f"read model behind by {_fmt(e2e.get('read_model_behind'))}"
            )
    if notes:
        lines += [
            "",
            "; ".join(notes) + ". Created can exceed the 2xx count by the requests in flight "
            "when wrk stopped.",
        ]
    lines += _backlog_line((result.get("end_to_end") or {}).get("backlog") or {})
    held = result.get("intake") or {}
    if held:
        phases = ", ".join(
            f"{phase} {_fmt(counts.get('held'))} (refused with 503: {_fmt(counts.get('refused'))})"
            for phase, counts in ((phase, counts or {}) for phase, counts in held.items())
        )
        lines += ["", f"Placements that waited for room under the bound on orders in progress: {phases}."]
    stolen = result.get("stolen_percent") or {}
    if stolen:
        lines += [
            "",
            "CPU time stolen by the hypervisor (other guests): "
            f"accepted {_fmt(stolen.get('accepted'), ' %')}, "
            f"sustained {_fmt(stolen.get('sustained'), ' %')}.",
        ]
    mine = ratios.get(name) or {}
    lines += [
        "",
        f"Ratios: accepted / pgbench **{_ratio(mine.get('accepted_over_pgbench'))}** (target ≥ 0.4), "
        f"completed / pgbench **{_ratio(mine.get('completed_over_pgbench'))}** in the window "
        f"(floor ≥ 0.1), {_ratio(mine.get('completed_overall_over_pgbench'))} overall (drain included), "
        f"accepted / peer {_ratio(mine.get('accepted_over_peer'))}.",
    ]
    cost = result.get("per_order") or {}
    if cost:
        by_table = ", ".join(
            f"{table} {_fmt(n)}" for table, n in (cost.get("rows_written_by_table") or {}).items()
        )
        lines += [
            "",
            f"Per completed order ({_fmt(cost.get('completed_orders'))} orders, everything the stack did "
            f"meanwhile): statements {_fmt(cost.get('statements'))}, commits {_fmt(cost.get('commits'))}, "
            f"rows written {_fmt(cost.get('rows_written'))} (inserted {_fmt(cost.get('rows_inserted'))}, "
            f"updated {_fmt(cost.get('rows_updated'))}, deleted {_fmt(cost.get('rows_deleted'))}), "
            f"table scans (sequential + index) {_fmt(cost.get('table_scans'))}, "
            f"time in statements {_fmt(cost.get('postgres_active_ms'), ' ms')} (summed over "
            "PostgreSQL sessions, lock and commit waits included). "
            f"Rows written by table: {by_table or 'n/a'}.",
        ]
    memory = result.get("memory") or []
    if memory:
        total = sum(p["rss_kib"] for p in memory) / 1024
        proportional = _pss_total(memory)
        shared = "" if proportional is None else f" (proportional set size: {proportional:,.1f} MiB)"
        lines += ["", f"Whole stack resident memory mid-accepted: **{total:,.1f} MiB**{shared}."]
    audit = result.get("audit")
    if audit:
        verdict = "clean" if audit.get("ok") else f"**{audit.get('discrepancies', 'n/a')} discrepancies**"
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted((audit.get("by_kind") or {}).items()))
        lines += [
            "",
            f"Money audit after the shape (`manage.py audit_money`): {verdict} "
            f"(exit {audit.get('exit_code')}){'; ' + kinds if kinds else ''}.",
        ]
    return [*lines, ""]


def backlog_summary(series: Sequence[dict[str, Any]], window_seconds: float) -> dict[str, Any]:
    """Where the pipeline's backlog sat: per work queue (messages ready + unacknowledged), its
    depth at the end of the load window and its most, and the open sagas by step then.

    ``series``: samples ``{"t": seconds since the window opened, "queues": {context: depth},
    "open_sagas": {"STATE:STEP": n}}``, in time order.
    """
    if not series:
        return {}
    in_window = [sample for sample in series if sample["t"] <= window_seconds] or series[:1]
    last = in_window[-1]
    queues = sorted({name for sample in series for name in sample["queues"]})
    return {
        "samples": len(series),
        "at_window_end_s": last["t"],
        "queues_at_window_end": {name: last["queues"].get(name, 0) for name in queues},
        "queues_most": {name: max(sample["queues"].get(name, 0) for sample in series) for name in queues},
        "open_sagas_at_window_end": dict(last.get("open_sagas") or {}),
    }


def _backlog_line(backlog: dict[str, Any]) -> list[str]:
    if not backlog:
        return []
    end, most = backlog["queues_at_window_end"], backlog["queues_most"]
    queues = ", ".join(f"{name} {_fmt(end[name])} (most {_fmt(most[name])})" for name in end)
    sagas = ", ".join(f"{step} {_fmt(n)}" for step, n in sorted(backlog["open_sagas_at_window_end"].items()))
    return [
        "",
        f"Sustained: backlog at the end of the window ({_fmt(backlog['at_window_end_s'])} s; messages "
        f"ready + unacknowledged per work queue): {queues or 'n/a'}; open sagas by state and step: "
        f"{sagas or 'none'}.",
    ]


def _pss_total(memory: Sequence[dict[str, Any]]) -> float | None:
    """The processes' proportional set sizes summed, in MiB (None when one was not read)."""
    sizes = [p.get("pss_kib") for p in memory]
    if any(size is None for size in sizes):
        return None
    return sum(int(size) for size in sizes if size is not None) / 1024


def render_markdown(report: dict[str, Any]) -> str:
    """The human report of one run (the same figures as the JSON)."""
    cfg = report["config"]
    shapes = report.get("shapes") or {}
    ratios = report.get("ratios") or {}
    lines = [
        f"# Benchmark {report['started_at']}",
        "",
        f"Machine: {cfg['cpus']} CPUs, load average at start {cfg['load_average']}. "
        f"web: gunicorn {cfg['web_workers']} uvicorn workers; "
        f"wrk {cfg['connections']} connections for {cfg['seconds']} s (accepted), "
        f"{cfg.get('e2e_connections', 'n/a')} connections paced to ~{cfg.get('e2e_rate', 'n/a')}/s for "
        f"{cfg.get('e2e_seconds', 'n/a')} s (end to end, sustained). "
        f"Bound on orders in progress (`ORDER_INTAKE_MAX_OPEN`): {cfg.get('order_intake_max_open', 'n/a')}. "
        f"Consumers' prefetch (`CONSUMER_PREFETCH`, `CONSUMER_PREFETCH_BY_CONTEXT`): "
        f"{cfg.get('consumer_prefetch', 'n/a')}, {cfg.get('consumer_prefetch_by_context', 'n/a')}.",
        "",
    ]
    idle = report.get("idle")
    if idle:
        latency = idle["created_to_completed_ms"]
        lines += [
            f"Idle stack, {idle['orders']} orders one at a time ({idle['completed']} completed): "
            f"OrderCreated → OrderCompleted P50 **{_fmt(latency.get('p50'), ' ms')}** (target < 50 ms), "
            f"P95 {_fmt(latency.get('p95'), ' ms')}, max {_fmt(latency.get('max'), ' ms')}.",
            "",
        ]
        if idle.get("steps_ms"):
            steps = ", ".join(f"{event} {_fmt(ms)}" for event, ms in idle["steps_ms"].items())
            lines += [
                f"Where it goes, median ms from OrderCreated to each event of the journey: {steps}.",
                "",
            ]
    for name, result in shapes.items():
        lines += _shape_section(name, result, ratios)
    if ratios.get("hot_over_spread_completed") is not None:
        lines += [
            f"Hot / spread completed rate (overall): **{_ratio(ratios['hot_over_spread_completed'])}** "
            "(target ≥ 0.5).",
            "",
        ]
    pg = report.get("pgbench") or {}
    peer = report.get("peer") or {}
    lines += [
        "## Peers (same run)",
        "",
        "| what | per second | notes |",
        "| --- | --- | --- |",
        f"| pgbench, create-order transaction (event + outbox row) | {_fmt(pg.get('tps'))} | "
        f"{pg.get('clients', 'n/a')} clients, avg latency {_fmt(pg.get('latency_avg_ms'), ' ms')}, "
        f"CPU time stolen {_fmt(pg.get('stolen_percent'), ' %')} |",
        f"| `eventsourcing` {peer.get('version', '')} POSTGRES, one new aggregate per save | "
        f"{_fmt(peer.get('per_second'))} | in-process, 1 thread, P95 "
        f"{_fmt((peer.get('latency_ms') or {}).get('p95'), ' ms')} |",
        "",
    ]
    first: dict[str, Any] = next(iter(shapes.values()), {})
    if first.get("memory"):
        lines += [
            f"## Resident memory at steady state (mid-accepted, shape `{next(iter(shapes))}`)",
            "",
            "| process | pid | RSS MiB | PSS MiB |",
            "| --- | --- | --- | --- |",
        ]
        for proc in first["memory"]:
            pss = proc.get("pss_kib")
            lines.append(
                f"| {proc['name']} | {proc['pid']} | {proc['rss_kib'] / 1024:.1f} | "
                f"{'n/a' if pss is None else f'{pss / 1024:.1f}'} |"
            )
        total = sum(p["rss_kib"] for p in first["memory"])
        proportional = _pss_total(first["memory"])
        pss_cell = "n/a" if proportional is None else f"{proportional:.1f}"
        lines += [f"| **total** | | {total / 1024:.1f} | {pss_cell} |", ""]
    settings = report.get("postgres") or {}
    if settings:
        lines += [
            "## PostgreSQL settings in force (the bench changes none)",
            "",
            " · ".join(f"`{name}` = {value or '(empty)'}" for name, value in settings.items()),
            "",
        ]
    if report.get("notes"):
        lines += ["## Notes", ""] + [f"- {note}" for note in report["notes"]] + [""]
    return "\n".join(lines)
