"""The payment gateway's circuit breaker, state in Redis.

What it means for an order: docs/architecture.md "Payments and the test tokens".

Over a sliding window of the last ``window`` calls, with at least ``min_calls`` calls, a
failure rate of at least ``failure_rate`` opens the breaker for ``open_seconds``; then ONE
trial call is let through (half-open): its success closes the breaker, its failure opens it
again. While open, calls fail fast with :class:`CircuitOpenError`. Only transient failures
and timeouts count as failures; a declined card is a successful call. Every opening (the window's
rule, or a failed trial) counts ``oms_payment_circuit_breaker_openings_total{gateway}``: a trip
that recovers at its first trial lasts seconds, shorter than a scrape, so the alert is on that
counter, not on the state.

The Redis store keeps the window in a list and the opening time in a hash, updated by Lua
scripts (atomic, one clock: Redis ``TIME``); the trial call's exclusivity is a ``SET NX`` with
expiry. Without Redis (embedded mode), or when Redis does not answer, an in-process store
applies the same rules.

Every change of state is a WARNING line, written once by the process whose call caused it
(state shared in Redis is changed by exactly one call): "payment breaker opened" (the window
tripped, or the trial call failed), "payment breaker half-open" (the trial call goes ahead) and
"payment breaker closed" (the trial call succeeded).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from django.conf import settings

from config import metrics

logger = logging.getLogger(__name__)

T = TypeVar("T")

CLOSED = "CLOSED"
TRIAL = "TRIAL"
OPEN = "OPEN"
OPENED = "OPENED"  # what record() answers when the outcome it recorded opened the breaker


class CircuitOpenError(Exception):
    """The breaker is open: the gateway was not called."""


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """The breaker's rule; the defaults are those of docs/architecture.md "Payments and the test tokens"."""

    window: int = 10
    min_calls: int = 5
    failure_rate: float = 0.5
    open_seconds: float = 5.0
    trial_seconds: float = 30.0  # how long a trial call may hold the half-open slot


class BreakerStore(Protocol):
    """Where the breaker's state lives."""

    def acquire(self) -> str:
        """``CLOSED`` or ``TRIAL`` when a call may go ahead; raises :class:`CircuitOpenError`."""
        ...

    def record(self, *, permit: str, failed: bool) -> str:
        """Record a call's outcome; returns the resulting state: ``CLOSED``, ``OPENED`` (this
        outcome opened it) or ``OPEN`` (it was open already: this late outcome is moot)."""
        ...


class CircuitBreaker:
    """Guards calls to one gateway (``name``: the gateway, for the log lines)."""

    def __init__(self, *, store: BreakerStore, name: str = "") -> None:
        self.store = store
        self.name = name

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` unless the breaker is open; transient failures and timeouts count against it."""
        permit = self.store.acquire()
        if permit == TRIAL:
            self._changed("payment breaker half-open", "HALF_OPEN", "one trial call goes ahead")
        try:
            result = fn()
        except Exception:
            self._recorded(permit, self.store.record(permit=permit, failed=True))
            raise
        self._recorded(permit, self.store.record(permit=permit, failed=False))
        return result

    def _recorded(self, permit: str, state: str) -> None:
        if state == OPENED:
            cause = "the trial call failed" if permit == TRIAL else "too many failed calls in the window"
            self._changed("payment breaker opened", OPEN, cause)
        elif permit == TRIAL and state == CLOSED:
            self._changed("payment breaker closed", CLOSED, "the trial call succeeded")

    def _changed(self, line: str, state: str, cause: str) -> None:
        logger.warning(line, extra={"breaker": self.name, "breaker_state": state, "cause": cause})


# --- In-process store ---------------------------------------------------------------------------


class LocalBreakerStore:
    """The breaker's state in this process only (embedded mode, or Redis unreachable)."""

    def __init__(
        self, config: BreakerConfig, *, name: str = "", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._window: deque[bool] = deque(maxlen=config.window)
        self._open_until: float | None = None
        self._trial_until: float | None = None

    def acquire(self) -> str:
        with self._lock:
            now = self._clock()
            if self._open_until is None:
                return CLOSED
            if now < self._open_until:
                raise CircuitOpenError("the payment gateway's circuit is open")
            if self._trial_until is not None and now < self._trial_until:
                raise CircuitOpenError("the payment gateway's circuit is half-open, trial call running")
            self._trial_until = now + self.config.trial_seconds
            return TRIAL

    def record(self, *, permit: str, failed: bool) -> str:
        with self._lock:
            now = self._clock()
            if permit == TRIAL:
                self._trial_until = None
                self._window.clear()
                self._open_until = now + self.config.open_seconds if failed else None
                if failed:
                    _count_opening(self.name)
                return OPENED if failed else CLOSED
            if self._open_until is not None:
                return OPEN  # opened meanwhile by another call: this late result is moot
            self._window.append(failed)
            if _should_open(self._window.count(True), len(self._window), self.config):
                self._window.clear()
                self._open_until = now + self.config.open_seconds
                _count_opening(self.name)
                return OPENED
            return CLOSED


def _count_opening(name: str) -> None:
    metrics.BREAKER_OPENINGS.labels(gateway=name or "unnamed").inc()


def _should_open(failures: int, calls: int, config: BreakerConfig) -> bool:
    return calls >= config.min_calls and failures >= config.failure_rate * calls


# --- Redis store ----------------------------------------------------------------------------------

_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "

_ACQUIRE = (
    _NOW_MS
    + """
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if open_until == 0 then return 'CLOSED' end
if now < open_until then return 'OPEN' end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 'TRIAL' end
return 'HALF_OPEN_BUSY'
"""
)

_RECORD = (
    _NOW_MS
    + """
local failed = ARGV[1] == '1'
local open_ms = tonumber(ARGV[6])
local ttl_ms = tonumber(ARGV[7])
if ARGV[2] == 'TRIAL' then
  redis.call('DEL', KEYS[2], KEYS[3])
  if failed then
    redis.call('HSET', KEYS[1], 'open_until', now + open_ms)
    redis.call('PEXPIRE', KEYS[1], ttl_ms)
    return 'OPENED'
  end
  redis.call('HSET', KEYS[1], 'open_until', 0)
  return 'CLOSED'
end
if tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0') ~= 0 then return 'OPEN' end
redis.call('LPUSH', KEYS[3], failed and '1' or '0')
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[3]) - 1)
redis.call('PEXPIRE', KEYS[3], ttl_ms)
local calls = redis.call('LRANGE', KEYS[3], 0, -1)
local failures = 0
for _, v in ipairs(calls) do if v == '1' then failures = failures + 1 end end
if #calls >= tonumber(ARGV[4]) and failures >= tonumber(ARGV[5]) * #calls then
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[1], 'open_until', now + open_ms)
  redis.call('PEXPIRE', KEYS[1], ttl_ms)
  return 'OPENED'
end
return 'CLOSED'
"""
)

_KEY_TTL_MS = 24 * 3600 * 1000


class RedisBreakerStore:
    """The breaker's state in Redis, shared by every process that uses the same name and prefix."""

    def __init__(
        self, config: BreakerConfig, *, name: str, client: object, prefix: str = "oms:breaker"
    ) -> None:
        import redis

        self.config = config
        self.name = name
        self._client: redis.Redis = client  # type: ignore[assignment]
        base = f"{prefix}:{name}"
        self._keys = [f"{base}:state", f"{base}:trial", f"{base}:window"]
        self._acquire = self._client.register_script(_ACQUIRE)
        self._record = self._client.register_script(_RECORD)
        self._fallback = LocalBreakerStore(config, name=name)
        self._redis_error = redis.RedisError

    def acquire(self) -> str:
        try:
            answer = self._acquire(keys=self._keys[:2], args=[int(self.config.trial_seconds * 1000)])
        except self._redis_error:
            logger.warning("circuit breaker store unreachable, using the in-process window", exc_info=True)
            return self._fallback.acquire()
        state = answer.decode() if isinstance(answer, bytes) else str(answer)
        if state in (CLOSED, TRIAL):
            return state
        raise CircuitOpenError(f"the payment gateway's circuit is open ({state.lower()})")

    def record(self, *, permit: str, failed: bool) -> str:
        args = [
            "1" if failed else "0",
            permit,
            self.config.window,
            self.config.min_calls,
            repr(self.config.failure_rate),
            int(self.config.open_seconds * 1000),
            _KEY_TTL_MS,
        ]
        try:
            answer = self._record(keys=self._keys, args=args)
        except self._redis_error:
            logger.warning("circuit breaker store unreachable, using the in-process window", exc_info=True)
            return self._fallback.record(permit=permit, failed=failed)
        state = answer.decode() if isinstance(answer, bytes) else str(answer)
        if state == OPENED:
            _count_opening(self.name)
        return state

    def reset(self) -> None:
        """Forget the state (operators, and tests that reuse a name)."""
        self._client.delete(*self._keys)


def shared_state(name: str) -> str:
    """The state every process sees for gateway ``name``: ``CLOSED``, ``OPEN`` or ``HALF_OPEN``.

    Read from the layout :class:`RedisBreakerStore` writes (``open_until`` in Redis ms, and the
    trial key while the one trial call of the half-open state runs), with Redis's clock. Without
    Redis (embedded mode) each process has its own breaker: nothing shared, so ``CLOSED``.
    Past the open period calls reach the gateway again: the first is the trial, and while it
    runs the others still fail fast (half-open). Before it starts nothing is refused, so an idle
    system whose breaker opened once reads closed, not half-open until the next payment.
    """
    if not settings.REDIS_URL:
        return "CLOSED"
    import redis

    prefix = str(getattr(settings, "PAYMENT_BREAKER_PREFIX", "oms:breaker"))
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        pipe = client.pipeline(transaction=False)
        pipe.hget(f"{prefix}:{name}:state", "open_until")
        pipe.exists(f"{prefix}:{name}:trial")
        pipe.time()
        raw_open_until, trial_running, (seconds, micros) = pipe.execute()
    finally:
        client.close()
    now_ms = seconds * 1000 + micros // 1000
    if now_ms < int(raw_open_until or 0):
        return OPEN
    return "HALF_OPEN" if trial_running else CLOSED


# --- The breaker of this deployment ----------------------------------------------------------------

_local_stores: dict[str, LocalBreakerStore] = {}
_local_lock = threading.Lock()


def make_breaker(
    *, name: str, config: BreakerConfig | None = None, redis_url: str | None = None, prefix: str | None = None
) -> CircuitBreaker:
    """A breaker for gateway ``name``: on Redis when a URL is configured, else in-process."""
    config = config or BreakerConfig(
        open_seconds=float(getattr(settings, "PAYMENT_BREAKER_OPEN_SECONDS", 5.0))
    )
    url = settings.REDIS_URL if redis_url is None else redis_url
    if url:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        key_prefix = str(prefix or getattr(settings, "PAYMENT_BREAKER_PREFIX", "oms:breaker"))
        store: BreakerStore = RedisBreakerStore(config, name=name, client=client, prefix=key_prefix)
        return CircuitBreaker(store=store, name=name)
    with _local_lock:
        store = _local_stores.setdefault(name, LocalBreakerStore(config, name=name))
    return CircuitBreaker(store=store, name=name)


_default: dict[str, CircuitBreaker] = {}


def default_breaker(gateway_name: str) -> CircuitBreaker:
    """The process-wide breaker of a gateway (its state lives in Redis when there is one)."""
    key = f"{getattr(settings, 'PAYMENT_BREAKER_PREFIX', 'oms:breaker')}:{gateway_name}"
    if key not in _default:
        _default[key] = make_breaker(name=gateway_name)
    return _default[key]
