"""The circuit breaker on the real Redis: the window rule, fail fast, the trial call, shared state."""

from __future__ import annotations

import contextlib
import time
import uuid

import pytest
import redis
from django.conf import settings

from payments.breaker import (
    BreakerConfig,
    CircuitBreaker,
    CircuitOpenError,
    LocalBreakerStore,
    RedisBreakerStore,
)
from payments.gateway import TransientGatewayError


def redis_breaker(name: str, *, open_seconds: float = 0.5) -> CircuitBreaker:
    """A breaker on Redis under a name of the test's own (as one process would build it)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    config = BreakerConfig(open_seconds=open_seconds)
    return CircuitBreaker(store=RedisBreakerStore(config, name=name, client=client, prefix="test:h5:breaker"))


@pytest.fixture
def name() -> str:
    return f"gw-{uuid.uuid4().hex}"


class Calls:
    """Counts the calls that reached the guarded function."""

    def __init__(self) -> None:
        self.count = 0

    def ok(self) -> str:
        self.count += 1
        return "ok"

    def fail(self) -> str:
        self.count += 1
        raise TransientGatewayError("down")


def play(breaker: CircuitBreaker, calls: Calls, pattern: str) -> None:
    """Run a pattern of S (success) and F (failure) calls through the breaker."""
    for step in pattern:
        with contextlib.suppress(TransientGatewayError):
            breaker.call(calls.ok if step == "S" else calls.fail)


def is_open(breaker: CircuitBreaker) -> bool:
    calls = Calls()
    try:
        breaker.call(calls.ok)
    except CircuitOpenError:
        assert calls.count == 0
        return True
    return False


@pytest.mark.parametrize("store", ["redis", "local"])
def test_three_failures_in_five_calls_open_it(name, store):
    breaker = (
        redis_breaker(name) if store == "redis" else CircuitBreaker(store=LocalBreakerStore(BreakerConfig()))
    )
    # given: failures interleaved with successes (never more than one in a row)
    play(breaker, Calls(), "FSFSF")
    # then: 3/5 = 60% ≥ 50% over at least 5 calls
    assert is_open(breaker)


@pytest.mark.parametrize("store", ["redis", "local"])
def test_four_failures_in_ten_calls_do_not_open_it(name, store):
    breaker = (
        redis_breaker(name) if store == "redis" else CircuitBreaker(store=LocalBreakerStore(BreakerConfig()))
    )
    calls = Calls()
    play(breaker, calls, "SSFSFSFSFS")
    assert calls.count == 10
    assert not is_open(breaker)


def test_fewer_than_five_calls_never_open_it(name):
    breaker = redis_breaker(name)
    play(breaker, Calls(), "FFFF")
    assert not is_open(breaker)


def test_the_window_slides_over_the_last_ten_calls(name):
    breaker = redis_breaker(name)
    # given: ten successes, then four failures (last ten calls: 6 S, 4 F — 40%)
    play(breaker, Calls(), "S" * 10 + "FFFF")
    assert not is_open(breaker)
    # when: one more failure — the last ten are 5 S, 5 F (50%); over all 15 calls it would be 33%
    play(breaker, Calls(), "F")
    assert is_open(breaker)


def test_open_fails_fast_without_calling_then_one_trial_call_decides(name):
    breaker = redis_breaker(name, open_seconds=0.5)
    play(breaker, Calls(), "FFFFF")
    calls = Calls()
    # when open: nothing reaches the gateway
    for _ in range(5):
        with pytest.raises(CircuitOpenError):
            breaker.call(calls.ok)
    assert calls.count == 0
    # after the open period: one trial call; a failed trial opens it again
    time.sleep(0.6)
    play(breaker, calls, "F")
    assert calls.count == 1
    assert is_open(breaker)
    # after another period: a successful trial closes it
    time.sleep(0.6)
    assert breaker.call(calls.ok) == "ok"
    assert not is_open(breaker)
    assert not is_open(breaker)


def test_only_one_trial_call_at_a_time(name):
    breaker = redis_breaker(name, open_seconds=0.3)
    play(breaker, Calls(), "FFFFF")
    time.sleep(0.4)
    other = redis_breaker(name, open_seconds=0.3)
    inner = Calls()

    def trial() -> str:
        # while the trial runs, another process is refused
        with pytest.raises(CircuitOpenError):
            other.call(inner.ok)
        return "ok"

    assert breaker.call(trial) == "ok"
    assert inner.count == 0
    assert not is_open(other)


def test_state_is_shared_by_two_instances_as_by_two_processes(name):
    first, second = redis_breaker(name), redis_breaker(name)
    play(first, Calls(), "FFF")
    play(second, Calls(), "SF")  # the fifth call of the shared window: 4/5 failures
    assert is_open(first)
    assert is_open(second)


@pytest.mark.slow
def test_the_real_open_period_is_five_seconds(name):
    breaker = redis_breaker(name, open_seconds=5.0)
    play(breaker, Calls(), "FFFFF")
    time.sleep(4.5)
    assert is_open(breaker)
    time.sleep(0.7)
    assert not is_open(breaker)  # the trial call went through and closed it


def test_declines_are_not_failures(name):
    from payments.gateway import ChargeResult

    breaker = redis_breaker(name)
    declined = ChargeResult(captured=False, amount=0)
    for _ in range(10):
        breaker.call(lambda: declined)
    assert not is_open(breaker)
