"""The benchmark harness's pure parts (bench/stats.py): parsing and arithmetic, no timing."""

from __future__ import annotations

import pytest

from bench import stats
from bench.run import end_to_end, process_name

WRK_TEXT = """Running 5s test @ http://127.0.0.1:8500/api/orders
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   180.12ms   40.31ms   1.02s    88.00%
  Latency Distribution
     50%  170.50ms
     75%  190.00ms
     90%  250.10ms
     99%    1.01s
  1790 requests in 5.01s, 600.12KB read
  Non-2xx or 3xx responses: 12
Requests/sec:    357.29
Transfer/sec:    119.80KB
"""

PGBENCH_TEXT = """pgbench (15.8 (Debian 15.8-0+deb12u1))
transaction type: bench/pgbench_create_order.sql
scaling factor: 1
query mode: simple
number of clients: 16
number of threads: 2
maximum number of tries: 1
duration: 5 s
number of transactions actually processed: 11804
number of failed transactions: 0 (0.000%)
latency average = 6.771 ms
latency stddev = 4.120 ms
initial connection time = 20.315 ms
tps = 2362.910848 (without initial connection time)
"""


def test_percentile_interpolates_between_ranks() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert stats.percentile(values, 0) == 1.0
    assert stats.percentile(values, 100) == 4.0
    assert stats.percentile(values, 50) == pytest.approx(2.5)
    assert stats.percentile([5.0, 1.0, 3.0], 50) == 3.0  # order of input does not matter
    assert stats.percentile(list(range(1, 101)), 95) == pytest.approx(95.05)


def test_percentile_of_nothing_is_none_and_bad_pct_is_refused() -> None:
    assert stats.percentile([], 50) is None
    with pytest.raises(ValueError):
        stats.percentile([1.0], 101)


def test_summarise_latencies() -> None:
    summary = stats.summarise_latencies([10.0, 20.0, 30.0, 40.0, 1000.0])
    assert summary["count"] == 5
    assert summary["mean"] == 220.0
    assert summary["p50"] == 30.0
    assert summary["max"] == 1000.0
    assert summary["p99"] is not None and 40.0 < summary["p99"] < 1000.0
    assert stats.summarise_latencies([])["p95"] is None


def test_parse_wrk_json_counts_every_non_2xx_and_socket_error() -> None:
    line = (
        'BENCH_WRK_JSON {"duration_us":5000000,"requests":1010,"bytes":1,'
        '"statuses":{"202":1000,"500":4,"429":6},'
        '"socket_errors":{"connect":0,"read":1,"write":0,"timeout":2},'
        '"latency_ms":{"mean":1,"p50":1,"p90":2,"p95":3,"p99":4,"max":5,"stdev":1}}'
    )
    parsed = stats.parse_wrk_json("Running 5s test\n" + line + "\n")
    assert parsed["ok"] == 1000
    assert parsed["non_2xx"] == 10
    assert parsed["errors"] == 13
    assert parsed["ok_per_second"] == 200.0
    assert parsed["statuses"] == {202: 1000, 500: 4, 429: 6}


def test_parse_wrk_json_without_summary_line_fails() -> None:
    with pytest.raises(ValueError):
        stats.parse_wrk_json("unable to connect to 127.0.0.1:8500 Connection refused\n")


def test_parse_wrk_text_converts_units_to_ms() -> None:
    parsed = stats.parse_wrk_text(WRK_TEXT)
    assert parsed["requests_per_second"] == 357.29
    assert parsed["requests"] == 1790
    assert parsed["non_2xx_3xx"] == 12
    assert parsed["latency_ms"] == {"p50": 170.5, "p75": 190.0, "p90": 250.1, "p99": 1010.0}


def test_parse_pgbench() -> None:
    parsed = stats.parse_pgbench(PGBENCH_TEXT)
    assert parsed == {
        "tps": 2362.910848,
        "latency_avg_ms": 6.771,
        "latency_stddev_ms": 4.12,
        "transactions": 11804,
        "failed": 0,
    }
    with pytest.raises(ValueError):
        stats.parse_pgbench("pgbench: error: connection refused")


def test_rss_ratio_and_buckets() -> None:
    assert stats.rss_kib("Name:\tpython\nVmRSS:\t   81234 kB\nThreads: 3\n") == 81234
    assert stats.rss_kib("Name:\tkthreadd\nThreads: 1\n") is None
    rollup = "55d0c0a00000-7ffd [rollup]\nRss:     109332 kB\nPss:      93871 kB\nPss_Anon: 1 kB\n"
    assert stats.pss_kib(rollup) == 93871
    assert stats.pss_kib("") is None
    assert stats.ratio(500.0, 2000.0) == 0.25
    assert stats.ratio(500.0, 0) is None
    assert stats.ratio(None, 10.0) is None
    assert stats.ratio(0.0, 10.0) == 0.0  # nothing completed in the window is a figure, not n/a
    assert stats.per_second_buckets([10.1, 10.9, 12.0, 12.5, 12.7]) == [2, 0, 3]
    assert stats.per_second_buckets([]) == []


def test_process_names_of_the_stack() -> None:
    gunicorn = "/x/.venv/bin/python /x/.venv/bin/gunicorn --config=c config.wsgi:application"
    assert process_name("/x/python /x/deploy/run_stack.py", "make") == "supervisor"
    assert process_name(gunicorn, "/x/python /x/deploy/run_stack.py") == "web master"
    assert process_name(gunicorn, gunicorn) == "web worker"
    assert process_name("/x/python /x/.venv/bin/celery -A config beat --loglevel=INFO", "s") == "beat"
    assert process_name("/x/python manage.py consume --all", "s") == "consume --all"
    assert process_name("/x/python manage.py consume sagas inventory", "s") == "consume sagas inventory"
    assert process_name("/x/python manage.py relay_outbox", "s") == "relay"


def _shape_result(rate: float, completed_rate: float, overall_rate: float | None = None) -> dict:
    return {
        "products": 20,
        "accepted": {
            "ok_per_second": rate,
            "ok": 1607,
            "errors": 0,
            "statuses": {202: 1607},
            "latency_ms": {"p50": 150.0, "p95": 300.0, "p99": 450.0, "max": 900.0},
        },
        "end_to_end": {
            "offered_per_second": 100.0,
            "completed_per_second_in_window": completed_rate,
            "completed_per_second_overall": completed_rate if overall_rate is None else overall_rate,
            "errors": 0,
            "created": 500,
            "completed": 500,
            "not_terminal": 0,
            "lost_or_stuck": 0,
            "created_to_completed_ms": {"p50": 400.0, "p95": 800.0},
        },
        "per_order": {"completed_orders": 500, "commits": 7.0, "rows_written": 93.0, "statements": None},
        "memory": [{"name": "web worker", "pid": 7, "rss_kib": 102400, "pss_kib": 81920}],
        "audit": {"ok": True, "exit_code": 0},
    }


def test_render_markdown_shows_one_table_per_shape_and_the_figures() -> None:
    shapes = {"spread": _shape_result(321.5, 99.0), "hot": _shape_result(200.0, 49.5)}
    shapes["spread"]["stolen_percent"] = {"accepted": 12.5, "sustained": None}
    shapes["spread"]["intake"] = {"accepted": {"held": 1200, "refused": 0}, "sustained": None}
    report = {
        "started_at": "2025-01-01T00:00:00Z",
        "config": {
            "cpus": 2,
            "load_average": "1.00",
            "web_workers": "2",
            "connections": 64,
            "seconds": 5.0,
            "order_intake_max_open": "500",
            "consumer_prefetch": "300",
            "consumer_prefetch_by_context": "{'queries': 1000}",
        },
        "shapes": shapes,
        "pgbench": {"tps": 2400.0, "clients": 16, "stolen_percent": 3.0},
        "peer": {"per_second": 450.0, "version": "9.5.6", "latency_ms": {"p95": 4.0}},
        "ratios": stats.shape_ratios(shapes, 2400.0, 450.0),
        "postgres": {"synchronous_commit": "on", "fsync": "on"},
        "idle": {
            "orders": 30,
            "completed": 30,
            "created_to_completed_ms": stats.summarise_latencies([40.0] * 29 + [90.0]),
            "steps_ms": {"OrderCreated": 0.0, "InventoryReserved": 15.6, "OrderCompleted": 40.0},
        },
    }
    text = stats.render_markdown(report)
    assert "## Shape `spread`" in text and "## Shape `hot`" in text
    assert text.count("| phase | offered /s |") == 2
    assert (
        "| accepted (closed loop) |  | 321.5 |  | request → 202 | 150.0 | 300.0 | 450.0 | 900.0 | 0 |" in text
    )
    assert (
        "| end to end, sustained | 100.0 |  | 99.0 | 202 → COMPLETED | 400.0 | 800.0 | n/a | n/a | 0 |"
        in text
    )
    assert "accepted / pgbench **0.13**" in text
    assert "(`CONSUMER_PREFETCH`, `CONSUMER_PREFETCH_BY_CONTEXT`): 300, {'queries': 1000}." in text
    assert "completed / pgbench **0.04**" in text
    assert "Hot / spread completed rate (overall): **0.50**" in text
    assert "statements n/a, commits 7.0, rows written 93.0" in text
    assert "| web worker | 7 | 100.0 | 80.0 |" in text
    assert "| **total** | | 100.0 | 80.0 |" in text
    assert (
        "Whole stack resident memory mid-accepted: **100.0 MiB** (proportional set size: 80.0 MiB)." in text
    )
    assert "`synchronous_commit` = on" in text
    assert (
        "Idle stack, 30 orders one at a time (30 completed): OrderCreated → OrderCompleted P50 "
        "**40.0 ms** (target < 50 ms), P95 " in text
    )
    assert (
        "Where it goes, median ms from OrderCreated to each event of the journey: OrderCreated 0.0, "
        "InventoryReserved 15.6, OrderCompleted 40.0." in text
    )
    assert "Money audit after the shape (`manage.py audit_money`): clean" in text
    assert "CPU time stolen by the hypervisor (other guests): accepted 12.5 %, sustained n/a." in text
    assert text.count("CPU time stolen by the hypervisor") == 1  # the hot shape recorded none
    assert "16 clients, avg latency n/a, CPU time stolen 3.0 % |" in text
    assert "Bound on orders in progress (`ORDER_INTAKE_MAX_OPEN`): 500." in text
    assert (
        "Placements that waited for room under the bound on orders in progress: accepted 1,200 "
        "(refused with 503: 0), sustained n/a (refused with 503: n/a)." in text
    )


def test_the_intake_counters_are_read_from_the_metrics_text_and_counted_between_two_readings() -> None:
    text = (
        "# HELP oms_orders_held_total Placements that waited\n"
        "# TYPE oms_orders_held_total counter\n"
        "oms_orders_held_total 12.0\n"
        "oms_orders_held_created 1.7e+09\n"
        "oms_orders_refused_busy_total 2.0\n"
    )
    before = stats.intake_counters(text)
    assert before == {"held": 12.0, "refused": 2.0}
    assert stats.intake_counters("") == {"held": 0.0, "refused": 0.0}
    after = {"held": 40.0, "refused": 2.0}
    assert stats.counted_between(before, after) == {"held": 28, "refused": 0}
    assert stats.counted_between(None, after) is None


def test_the_stolen_share_is_the_steal_column_over_all_ticks_between_two_readings() -> None:
    before = stats.cpu_ticks("cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 1 2 3\n")
    after = stats.cpu_ticks("cpu  200 0 70 1500 10 0 5 215 7 0\n")
    assert before == (1000, 35)
    assert after == (2000, 215)
    assert stats.stolen_percent(before, after) == 18.0
    assert stats.stolen_percent(None, after) is None
    assert stats.stolen_percent(after, after) is None


def test_shapes_and_their_products() -> None:
    products = ["SKU-0001", "SKU-0002", "SKU-0003"]
    assert stats.parse_shapes("spread,hot") == ["spread", "hot"]
    assert stats.parse_shapes(" hot , hot ") == ["hot"]
    with pytest.raises(ValueError):
        stats.parse_shapes("spread,flash")
    with pytest.raises(ValueError):
        stats.parse_shapes(" , ")
    assert stats.shape_products("spread", products) == products
    assert stats.shape_products("hot", products) == ["SKU-0001"]
    with pytest.raises(ValueError):
        stats.shape_products("cold", products)


def test_the_sustained_phase_is_a_minute_in_a_full_run_and_short_in_a_quick_one() -> None:
    assert stats.default_e2e_seconds(30) == 60.0
    assert stats.default_e2e_seconds(45) == 60.0
    assert stats.default_e2e_seconds(5) == 5


def test_durability_problems() -> None:
    assert stats.durability_problems({"synchronous_commit": "on", "fsync": "on"}) == []
    assert stats.durability_problems({"synchronous_commit": "remote_apply", "fsync": "on"}) == []
    problems = stats.durability_problems({"synchronous_commit": "off", "fsync": "off"})
    assert len(problems) == 2 and "synchronous_commit" in problems[0] and "fsync" in problems[1]


def _counters(
    commits: int,
    ins: int,
    upd: int,
    dele: int,
    tables: dict,
    statements: int | None = None,
    active: float = 0.0,
) -> dict:
    return {
        "active_ms": active,
        "commits": commits,
        "inserted": ins,
        "updated": upd,
        "deleted": dele,
        "statements": statements,
        "tables": tables,
    }


def test_per_order_costs_are_counter_deltas_over_completed_orders() -> None:
    outbox = {"outbox": {"written": 900, "scans": 40}}
    before = _counters(100, 1000, 500, 10, outbox, statements=5000, active=50.0)
    after = _counters(
        800,
        6000,
        2500,
        110,
        {"outbox": {"written": 3900, "scans": 140}, "event_store": {"written": 1000, "scans": 0}},
        statements=12000,
        active=400.0,
    )
    cost = stats.per_order_costs(before, after, 100)
    assert cost["commits"] == 7.0
    assert (cost["rows_inserted"], cost["rows_updated"], cost["rows_deleted"]) == (50.0, 20.0, 1.0)
    assert cost["rows_written"] == 71.0
    assert cost["table_scans"] == 1.0
    assert cost["statements"] == 70.0
    assert cost["postgres_active_ms"] == 3.5
    assert cost["rows_written_by_table"] == {"outbox": 30.0, "event_store": 10.0}
    assert cost["totals"]["rows_written"] == 7100
    # Without pg_stat_statements there is no statement count; without orders, no per-order figure.
    assert (
        stats.per_order_costs(_counters(0, 0, 0, 0, {}), _counters(1, 1, 0, 0, {}), 1)["statements"] is None
    )
    assert stats.per_order_costs(before, after, 0)["commits"] is None


def test_shape_ratios() -> None:
    ratios = stats.shape_ratios(
        {"spread": _shape_result(1000.0, 500.0, 600.0), "hot": _shape_result(800.0, 0.0, 360.0)},
        2000.0,
        500.0,
    )
    assert ratios["spread"] == {
        "accepted_over_pgbench": 0.5,
        "completed_over_pgbench": 0.25,
        "completed_overall_over_pgbench": 0.3,
        "accepted_over_peer": 2.0,
    }
    assert ratios["hot"]["completed_over_pgbench"] == 0.0
    # hot over spread compares capacities (overall), not a window a backlog may starve
    assert ratios["hot_over_spread_completed"] == 0.6
    assert "hot_over_spread_completed" not in stats.shape_ratios({"hot": _shape_result(1.0, 1.0)}, None, None)


def test_end_to_end_counts_lost_stuck_and_latency() -> None:
    snapshot = {
        "states": {"COMPLETED": 3, "COMPENSATED": 1, "PAYMENT_PROCESSING": 1},
        "created": [100.0, 100.5, 101.0, 101.2, 101.5],
        "completed": [(100.0, 100.2), (100.5, 101.5), (101.0, 103.0)],
        "read_model_completed": 2,
    }
    # wrk saw 7 answered 202 but only 5 orders exist: 2 lost; 1 saga still open: stuck.
    result = end_to_end(snapshot, {"ok": 7, "ok_per_second": 3.5}, (100.0, 102.0), 4.0)
    assert result["created"] == 5
    assert result["completed"] == 3
    assert result["other_terminal"] == 1
    assert result["not_terminal"] == 1
    assert result["lost"] == 2
    assert result["lost_or_stuck"] == 3
    assert result["read_model_behind"] == 1
    assert result["completed_per_second_in_window"] == 1.0  # 2 completions in the 2 s window
    assert result["created_to_completed_ms"]["max"] == 2000.0
    assert result["completed_per_second_overall"] == 1.0  # 3 completions from 100.0 to 103.0


def test_the_backlog_summary_reads_the_last_sample_of_the_window_and_the_most_of_each_queue() -> None:
    series = [
        {"t": 0.0, "queues": {"sagas": 0, "queries": 0}, "open_sagas": {}},
        {
            "t": 30.0,
            "queues": {"sagas": 900, "queries": 4000},
            "open_sagas": {"STARTED:RESERVE_INVENTORY": 50},
        },
        {
            "t": 60.0,
            "queues": {"sagas": 700, "queries": 6000},
            "open_sagas": {"STARTED:RESERVE_INVENTORY": 80},
        },
        {"t": 62.0, "queues": {"sagas": 1200, "queries": 5000}, "open_sagas": {}},  # draining
    ]

    summary = stats.backlog_summary(series, window_seconds=60.5)

    assert summary["at_window_end_s"] == 60.0
    assert summary["queues_at_window_end"] == {"queries": 6000, "sagas": 700}
    assert summary["queues_most"] == {"queries": 6000, "sagas": 1200}
    assert summary["open_sagas_at_window_end"] == {"STARTED:RESERVE_INVENTORY": 80}
    assert stats.backlog_summary([], window_seconds=60) == {}
