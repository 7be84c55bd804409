"""The load of a scenario: orders placed through the HTTP API at a steady rate, some cancelled.

Every order carries an ``Idempotency-Key``, so a request that failed without an answer (the
web process killed, a database connection terminated, the stack restarting) is simply sent
again with the same key until it gets a 202 or its retry budget runs out; only a 202 makes an
order *accepted*. An order picked for cancellation gets ``DELETE /api/orders/{id}`` a random
moment after its 202 (before or after it completes).
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

TOKENS = ("tok_ok", "tok_declined", "tok_flaky", "tok_slow", "tok_gateway_down", "tok_late")
# The mixed load: mostly good cards, every test token present. Gateway failures and timeouts
# are kept rare enough that the circuit breaker (>= 50 % failures over 10 calls) opens now and
# then, not all the time: with 10 % of each failing token it was open for most of a run, with
# 22 % failing tokens for two thirds of the baseline, with these 10 % for about 5 s of it.
MIXED_WEIGHTS = {
    "tok_ok": 85,
    "tok_declined": 5,
    "tok_flaky": 3,
    "tok_slow": 3,
    "tok_late": 2,
    "tok_gateway_down": 2,
}
BROWNOUT_WEIGHTS = {"tok_slow": 40, "tok_late": 40, "tok_gateway_down": 20}
PRODUCTS = [f"SKU-{n:04d}" for n in range(1, 21)]
USERS = ("alice", "bob")
RETRY_STATUSES = {409, 429, 500, 502, 503, 504}


@dataclass
class OrderSpec:
    """One order of the plan: when to send it, for whom, what and with which card."""

    index: int
    at: float
    user: str
    token: str
    items: list[tuple[str, int]]
    cancel_after: float | None = None


@dataclass
class OrderResult:
    """What the API answered for one order of the plan."""

    spec: OrderSpec
    key: str
    order_id: str | None = None
    status: int | str | None = None  # the last answer to the POST (an int, or an error name)
    attempts: int = 0
    accepted_at: float | None = None
    cancel_status: int | str | None = None
    cancel_attempts: int = 0

    @property
    def accepted(self) -> bool:
        return self.order_id is not None


@dataclass
class Plan:
    orders: list[OrderSpec] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.orders[-1].at if self.orders else 0.0


def mixed_plan(
    count: int,
    rate: float,
    rng: random.Random,
    *,
    cancel_share: float = 0.1,
    brownout: tuple[float, float, float] | None = None,
) -> Plan:
    """``count`` orders at ``rate``/s with the mixed card tokens and ``cancel_share`` cancelled.

    ``brownout=(start, end, rate)``: between ``start`` and ``end`` (fractions of the order
    count) the orders come at ``rate``/s with slow, late and failing gateway tokens only.
    """
    specs = []
    at = 0.0
    for index in range(count):
        in_brownout = brownout is not None and brownout[0] * count <= index < brownout[1] * count
        weights = BROWNOUT_WEIGHTS if in_brownout else MIXED_WEIGHTS
        token = rng.choices(list(weights), weights=list(weights.values()))[0]
        lines = rng.sample(PRODUCTS, rng.choice((1, 1, 2, 3)))
        items = [(product, rng.choice((1, 1, 2))) for product in lines]
        cancel_after = rng.uniform(0.0, 3.0) if rng.random() < cancel_share else None
        specs.append(OrderSpec(index, at, USERS[index % 2], token, items, cancel_after))
        at += 1.0 / (brownout[2] if in_brownout and brownout else rate)
    return Plan(specs)


class Api:
    """A minimal JSON client of the stack's API."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def call(
        self, method: str, path: str, *, body: Any = None, access: str | None = None, key: str | None = None
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if access:
            headers["Authorization"] = f"Bearer {access}"
        if key:
            headers["Idempotency-Key"] = key
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, _json(response.read())
            except urllib.error.HTTPError as exc:
                return exc.code, _json(exc.read())
        except http.client.HTTPException as exc:
            # The server died mid-answer (IncompleteRead, a bad status line): the answer is lost
            # as with a dropped connection, which every caller retries with the same key.
            raise ConnectionError(f"answer cut short: {exc!r}") from exc

    def token(self, username: str, password: str, *, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                status, body = self.call(
                    "POST", "/api/auth/token", body={"username": username, "password": password}
                )
                if status == 200:
                    return str(body["access"])
            except OSError:
                status = None
            if time.monotonic() > deadline:
                raise RuntimeError(f"no token for {username}: last answer {status}")
            time.sleep(0.5)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


class Load:
    """Runs a :class:`Plan` against the API on a pool of threads; :meth:`run` blocks until done."""

    def __init__(
        self,
        api: Api,
        plan: Plan,
        access: dict[str, str],
        *,
        run_id: str,
        post_budget: float = 45.0,
        cancel_budget: float = 30.0,
        workers: int = 48,
    ) -> None:
        self.api = api
        self.plan = plan
        self.access = access
        self.run_id = run_id
        self.post_budget = post_budget
        self.cancel_budget = cancel_budget
        self.workers = workers
        self.results = [OrderResult(spec, key=f"chaos-{run_id}-{spec.index}") for spec in plan.orders]
        self.started = 0.0
        self._lock = threading.Lock()
        self.sent = 0

    def run(self, on_tick: Callable[[float], None] | None = None) -> list[OrderResult]:
        self.started = time.monotonic()
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="load") as pool:
            futures = []
            for result in self.results:
                delay = self.started + result.spec.at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                futures.append(pool.submit(self._order, result))
                self.sent += 1
            for future in futures:
                future.result()
        return self.results

    def _order(self, result: OrderResult) -> None:
        spec = result.spec
        body = {
            "items": [{"product_id": p, "quantity": q} for p, q in spec.items],
            "payment": {"method": "card", "token": spec.token},
        }
        deadline = time.monotonic() + self.post_budget
        pause = 0.25
        while True:
            result.attempts += 1
            try:
                status, answer = self.api.call(
                    "POST", "/api/orders", body=body, access=self.access[spec.user], key=result.key
                )
                result.status = status
                if status == 202 and isinstance(answer, dict) and answer.get("order_id"):
                    result.order_id = str(answer["order_id"])
                    result.accepted_at = time.monotonic()
                    break
                if status not in RETRY_STATUSES:
                    return
            except OSError as exc:
                result.status = type(exc).__name__
            if time.monotonic() + pause > deadline:
                return
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
        if spec.cancel_after is not None:
            time.sleep(spec.cancel_after)
            self._cancel(result)

    def _cancel(self, result: OrderResult) -> None:
        deadline = time.monotonic() + self.cancel_budget
        pause = 0.25
        while True:
            result.cancel_attempts += 1
            try:
                status, answer = self.api.call(
                    "DELETE", f"/api/orders/{result.order_id}", access=self.access[result.spec.user]
                )
                result.cancel_status = status
                terminal = isinstance(answer, dict) and str(answer.get("type", "")).endswith(
                    ":order_terminal"
                )
                if status not in RETRY_STATUSES or terminal:
                    # 409 order_terminal: the order can no longer be cancelled: an answer.
                    return
            except OSError as exc:
                result.cancel_status = type(exc).__name__
            if time.monotonic() + pause > deadline:
                return
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
