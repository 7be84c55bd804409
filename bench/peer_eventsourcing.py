"""The `eventsourcing` library peer: save one new aggregate per call, in-process, for N seconds.

Run as ``python bench/peer_eventsourcing.py --seconds 20 --database oms_bench_peer``; prints one
JSON object (saves, seconds, per_second, latency percentiles in ms). It uses the library's
POSTGRES persistence module (psycopg 3) against a scratch database of its own, so its table
never mixes with the product's event store. No HTTP, no Django: the peer is the library alone,
which is why the ratio ``accepted / peer`` is a fair measure of what our HTTP path costs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stats import summarise_latencies


class BenchOrder(Aggregate):
    """An order-like aggregate: one creation event carrying a small body."""

    @event("Created")
    def __init__(self, customer_id: str, items: list[dict[str, object]], total: str) -> None:
        self.customer_id = customer_id
        self.items = items
        self.total = total


class Orders(Application):
    """The peer application; its persistence comes from the environment (PERSISTENCE_MODULE)."""


def configure(*, database: str, host: str, port: int, user: str, password: str) -> None:
    """Point the library's POSTGRES module at ``database`` (it creates its table itself)."""
    os.environ.update(
        {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": database,
            "POSTGRES_HOST": host,
            "POSTGRES_PORT": str(port),
            "POSTGRES_USER": user,
            "POSTGRES_PASSWORD": password,
            "CREATE_TABLE": "y",
        }
    )


def run(*, seconds: float) -> dict[str, object]:
    """Save new aggregates one per call until ``seconds`` have passed."""
    app = Orders()
    items: list[dict[str, object]] = [{"product_id": "SKU-0001", "quantity": 1, "price": "25.00"}]
    latencies: list[float] = []
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        before = time.perf_counter()
        if before >= deadline:
            break
        app.save(BenchOrder(customer_id="alice", items=items, total="25.00"))
        latencies.append((time.perf_counter() - before) * 1000.0)
    elapsed = time.perf_counter() - started
    app.close()
    return {
        "saves": len(latencies),
        "seconds": round(elapsed, 3),
        "per_second": round(len(latencies) / elapsed, 1) if elapsed else 0.0,
        "latency_ms": summarise_latencies(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--database", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--password", default="")
    args = parser.parse_args()
    configure(database=args.database, host=args.host, port=args.port, user=args.user, password=args.password)
    print(json.dumps(run(seconds=args.seconds)))


if __name__ == "__main__":
    main()
