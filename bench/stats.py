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


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` to two decimals; None when either is missing or zero."""
    if not numerator or not denominator:
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


def render_markdown(report: dict[str, Any]) -> str:
    """The human report of one run (the same figures as the JSON)."""
    cfg = report["config"]
    acc = report.get("accepted") or {}
    lines = [
        f"# Benchmark {report['started_at']}",
        "",
        f"Machine: {cfg['cpus']} CPUs, load average at start {cfg['load_average']}. "
        f"gunicorn {cfg['web_workers']} workers x {cfg['web_threads']} threads; "
        f"wrk {cfg['connections']} connections, {cfg['seconds']} s per phase.",
        "",
        "## Accepted (POST /api/orders, 202)",
        "",
        "| orders/s | P50 ms | P95 ms | P99 ms | max ms | 2xx | errors (non-2xx + socket) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lat = acc.get("latency_ms", {})
    lines.append(
        f"| {_fmt(acc.get('ok_per_second'))} | {_fmt(lat.get('p50'))} | {_fmt(lat.get('p95'))} | "
        f"{_fmt(lat.get('p99'))} | {_fmt(lat.get('max'))} | {_fmt(acc.get('ok'))} | "
        f"{_fmt(acc.get('errors'))} |"
    )
    if acc.get("statuses"):
        lines += ["", "Status codes: " + ", ".join(f"{k}: {v}" for k, v in sorted(acc["statuses"].items()))]
    for key, title in (("end_to_end_burst", "after the accepted phase"), ("end_to_end", "paced run")):
        e2e = report.get(key)
        if not e2e:
            continue
        e2e_lat = e2e.get("created_to_completed_ms", {})
        lines += [
            "",
            f"## End to end, {title} ({e2e.get('description', '')})",
            "",
            "| offered orders/s | completed orders/s (load window) | completed orders/s (overall) | "
            "202→COMPLETED P50 ms | P95 ms | P99 ms | max ms | created | completed | other terminal | "
            "not terminal |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            f"| {_fmt(e2e.get('offered_per_second'))} | {_fmt(e2e.get('completed_per_second_in_window'))} | "
            f"{_fmt(e2e.get('completed_per_second_overall'))} | {_fmt(e2e_lat.get('p50'))} | "
            f"{_fmt(e2e_lat.get('p95'))} | {_fmt(e2e_lat.get('p99'))} | {_fmt(e2e_lat.get('max'))} | "
            f"{_fmt(e2e.get('created'))} | {_fmt(e2e.get('completed'))} | "
            f"{_fmt(e2e.get('other_terminal'))} | {_fmt(e2e.get('not_terminal'))} |",
            "",
            f"Lost or stuck orders: **{e2e.get('lost_or_stuck')}** "
            f"(drain took {_fmt(e2e.get('drain_seconds'), ' s')}); completed orders the read model "
            f"does not show yet: {_fmt(e2e.get('read_model_behind'))}. Created can exceed the 2xx "
            "count by up to the connections in flight when wrk stopped.",
        ]
    pg = report.get("pgbench") or {}
    peer = report.get("peer") or {}
    ratios = report.get("ratios") or {}
    lines += [
        "",
        "## Peers (same run)",
        "",
        "| what | per second | notes |",
        "| --- | --- | --- |",
        f"| pgbench, create-order transaction (event + outbox row) | {_fmt(pg.get('tps'))} | "
        f"{pg.get('clients', 'n/a')} clients, avg latency {_fmt(pg.get('latency_avg_ms'), ' ms')} |",
        f"| `eventsourcing` {peer.get('version', '')} POSTGRES, one new aggregate per save | "
        f"{_fmt(peer.get('per_second'))} | in-process, 1 thread, P95 "
        f"{_fmt((peer.get('latency_ms') or {}).get('p95'), ' ms')} |",
        "",
        f"Ratios: accepted / pgbench = **{_ratio(ratios.get('accepted_over_pgbench'))}** (target ≥ 0.4); "
        f"accepted / peer = **{_ratio(ratios.get('accepted_over_peer'))}** (target ≥ 2).",
        "",
        "## Resident memory at steady state (during the accepted phase)",
        "",
        "| process | pid | RSS MiB |",
        "| --- | --- | --- |",
    ]
    for proc in report.get("memory", []):
        lines.append(f"| {proc['name']} | {proc['pid']} | {proc['rss_kib'] / 1024:.1f} |")
    total = sum(p["rss_kib"] for p in report.get("memory", []))
    lines += [f"| **total** | | {total / 1024:.1f} |", ""]
    audit = report.get("audit")
    if audit:
        verdict = "clean" if audit.get("ok") else f"**{audit.get('discrepancies', 'n/a')} discrepancies**"
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted((audit.get("by_kind") or {}).items()))
        lines += [
            "## Money audit after the run (`manage.py audit_money`)",
            "",
            f"{verdict} (exit {audit.get('exit_code')}){'; ' + kinds if kinds else ''}.",
            "",
        ]
    if report.get("notes"):
        lines += ["## Notes", ""] + [f"- {note}" for note in report["notes"]] + [""]
    return "\n".join(lines)
