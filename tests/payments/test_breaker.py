"""The circuit breaker on the real Redis: the window rule, fail fast, the trial call, shared state.

No test here sleeps a fixed time and hopes the open period has (or has not) ended: the Redis
store keeps Redis's clock, so a test that waits for the period polls the breaker until it lets
a call through and checks, call by call, that what it saw fits the period (see
:func:`until_let_through`); the in-process store is driven on an injected clock.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

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

# A test that never waits for the open period uses a long one: its "still open" checks cannot
# outlast it however slow the machine is.
LONG_OPEN_SECONDS = 60.0
# A test that waits for the period: long enough for the checks made while it is open (a few
# Redis round trips), short enough to keep the test quick.
OPEN_SECONDS = 2.0
# Redis keeps milliseconds, and its clock and time.monotonic() are read at different moments.
SLACK = 0.05


def redis_breaker(name: str, *, open_seconds: float = LONG_OPEN_SECONDS) -> CircuitBreaker:
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


def opening(breaker: CircuitBreaker, pattern: str) -> tuple[float, float]:
    """Play ``pattern``, whose last call opens the breaker; the monotonic moments around that call."""
    play(breaker, Calls(), pattern[:-1])
    before = time.monotonic()
    play(breaker, Calls(), pattern[-1])
    return before, time.monotonic()


@dataclass
class LetThrough:
    """The first call the breaker let through after opening (the trial call), and the refusals before."""

    refusals: int
    outcome: object  # what the call returned, or the TransientGatewayError it raised
    started: float
    ended: float


def until_let_through(
    breaker: CircuitBreaker,
    fn: Callable[[], object],
    *,
    opened: tuple[float, float],
    open_seconds: float,
) -> LetThrough:
    """Call ``fn`` through the breaker every 20 ms until a call goes through; that call is returned.

    The breaker opened between ``opened[0]`` and ``opened[1]`` for ``open_seconds``. Whatever
    the machine's speed: a refused call must have started before the period could have ended,
    and the call let through must have ended after the period could have ended.
    """
    opened_from, opened_to = opened
    refusals = 0
    while True:
        started = time.monotonic()
        try:
            outcome: object = breaker.call(fn)
        except CircuitOpenError:
            waited = started - opened_to
            assert waited < open_seconds + SLACK, f"still refused {waited:.3f}s after it opened"
            refusals += 1  # (refusals past the period fail above: the loop ends)
            time.sleep(0.02)
            continue
        except TransientGatewayError as exc:
            outcome = exc
        ended = time.monotonic()
        after = ended - opened_from
        assert after > open_seconds - SLACK, f"a call let through {after:.3f}s after it opened"
        return LetThrough(refusals, outcome, started, ended)


def test_open_fails_fast_without_calling_then_one_trial_call_decides(name):
    breaker = redis_breaker(name, open_seconds=OPEN_SECONDS)
    opened = opening(breaker, "FFFFF")
    calls = Calls()
    # when open: nothing reaches the gateway
    for _ in range(5):
        with pytest.raises(CircuitOpenError):
            breaker.call(calls.ok)
    assert calls.count == 0
    # after the open period: one trial call; a failed trial opens it again
    trial = until_let_through(breaker, calls.fail, opened=opened, open_seconds=OPEN_SECONDS)
    assert isinstance(trial.outcome, TransientGatewayError)
    assert calls.count == 1 and trial.refusals > 0
    assert is_open(breaker)
    # after another period: a successful trial closes it
    trial = until_let_through(
        breaker, calls.ok, opened=(trial.started, trial.ended), open_seconds=OPEN_SECONDS
    )
    assert trial.outcome == "ok" and calls.count == 2 and trial.refusals > 0
    assert not is_open(breaker)
    assert not is_open(breaker)


def test_only_one_trial_call_at_a_time(name):
    breaker = redis_breaker(name, open_seconds=OPEN_SECONDS)
    opened = opening(breaker, "FFFFF")
    other = redis_breaker(name, open_seconds=OPEN_SECONDS)
    inner = Calls()

    def trial() -> str:
        # while the trial runs, another process is refused (the trial holds the half-open slot)
        with pytest.raises(CircuitOpenError):
            other.call(inner.ok)
        return "ok"

    assert until_let_through(breaker, trial, opened=opened, open_seconds=OPEN_SECONDS).outcome == "ok"
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
    breaker = redis_breaker(name, open_seconds=BreakerConfig().open_seconds)
    assert BreakerConfig().open_seconds == 5.0
    opened = opening(breaker, "FFFFF")
    trial = until_let_through(breaker, Calls().ok, opened=opened, open_seconds=5.0)
    assert trial.outcome == "ok" and trial.refusals > 0
    assert not is_open(breaker)  # the trial call went through and closed it


def test_declines_are_not_failures(name):
    from payments.gateway import ChargeResult

    breaker = redis_breaker(name)
    declined = ChargeResult(captured=False, amount=0)
    for _ in range(10):
        breaker.call(lambda: declined)
    assert not is_open(breaker)


def test_the_in_process_store_on_an_injected_clock():
    now = [1000.0]
    store = LocalBreakerStore(BreakerConfig(open_seconds=5.0), clock=lambda: now[0])
    breaker, other = CircuitBreaker(store=store), CircuitBreaker(store=store)
    play(breaker, Calls(), "FFFFF")  # opens at 1000.0
    calls = Calls()
    now[0] = 1004.999
    assert is_open(breaker)
    # the period is over: one trial call, and no other while it runs; it fails and reopens
    now[0] = 1005.0

    def failing_trial() -> str:
        with pytest.raises(CircuitOpenError):
            other.call(calls.ok)
        return calls.fail()

    with pytest.raises(TransientGatewayError):
        breaker.call(failing_trial)
    assert calls.count == 1
    now[0] = 1009.999
    assert is_open(breaker)
    # a successful trial closes it
    now[0] = 1010.0
    assert breaker.call(calls.ok) == "ok"
    assert calls.count == 2
    assert not is_open(other)


def openings(name: str) -> float:
    from config.metrics import BREAKER_OPENINGS

    return BREAKER_OPENINGS.labels(gateway=name)._value.get()


def test_every_opening_is_counted_once_in_process(name):
    now = [1000.0]
    store = LocalBreakerStore(BreakerConfig(open_seconds=5.0), name=name, clock=lambda: now[0])
    breaker = CircuitBreaker(store=store)
    # the window's rule opens it: one opening, and the calls refused meanwhile add none
    play(breaker, Calls(), "FFFFF")
    assert openings(name) == 1
    assert is_open(breaker) and is_open(breaker)
    assert openings(name) == 1
    # a failed trial opens it again
    now[0] = 1005.0
    play(breaker, Calls(), "F")
    assert openings(name) == 2
    # a successful trial closes it without counting
    now[0] = 1010.0
    play(breaker, Calls(), "S")
    assert openings(name) == 2 and not is_open(breaker)


def test_every_opening_is_counted_once_on_redis(name):
    breaker = redis_breaker(name, open_seconds=OPEN_SECONDS)
    other = redis_breaker(name, open_seconds=OPEN_SECONDS)
    # given two calls in flight when the window opens the breaker
    store = breaker.store
    permits = [store.acquire() for _ in range(6)]
    for permit in permits[:4]:
        store.record(permit=permit, failed=True)
    opened = (time.monotonic(), 0.0)
    store.record(permit=permits[4], failed=True)
    opened = (opened[0], time.monotonic())
    assert openings(name) == 1
    # a result that comes back after it opened is moot: no second opening
    assert store.record(permit=permits[5], failed=True) == "OPEN"
    assert openings(name) == 1
    # the period ends: a failed trial (of another process) opens it again
    until_let_through(other, Calls().fail, opened=opened, open_seconds=OPEN_SECONDS)
    assert openings(name) == 2


# --- Its changes of state are logged, once each ------------------------------------------------


OPENED_BY_THE_WINDOW = ("WARNING", "payment breaker opened", "too many failed calls in the window")


def breaker_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str]]:
    """The breaker's lines so far: (level, line, cause), then forgotten."""
    lines = [
        (r.levelname, r.getMessage(), r.cause)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "payments.breaker"
    ]
    caplog.clear()
    return lines


def test_each_change_of_state_is_one_warning(caplog):
    caplog.set_level(logging.WARNING, logger="payments.breaker")
    now = [1000.0]
    breaker = CircuitBreaker(
        store=LocalBreakerStore(BreakerConfig(open_seconds=5.0), clock=lambda: now[0]), name="simulator"
    )
    # calls that do not change the state write nothing
    play(breaker, Calls(), "FSFS")
    assert breaker_lines(caplog) == []
    # the call that trips the window opens it
    play(breaker, Calls(), "F")
    assert breaker_lines(caplog) == [OPENED_BY_THE_WINDOW]
    assert is_open(breaker) and breaker_lines(caplog) == []  # refused calls: no line
    # after the period the trial call goes ahead; it fails and opens it again
    now[0] = 1005.0
    play(breaker, Calls(), "F")
    assert breaker_lines(caplog) == [
        ("WARNING", "payment breaker half-open", "one trial call goes ahead"),
        ("WARNING", "payment breaker opened", "the trial call failed"),
    ]
    # a successful trial closes it
    now[0] = 1010.0
    play(breaker, Calls(), "S")
    assert breaker_lines(caplog) == [
        ("WARNING", "payment breaker half-open", "one trial call goes ahead"),
        ("WARNING", "payment breaker closed", "the trial call succeeded"),
    ]


def test_the_shared_breaker_is_logged_opened_by_the_one_call_that_opened_it(name, caplog):
    caplog.set_level(logging.WARNING, logger="payments.breaker")
    first, second = redis_breaker(name), redis_breaker(name)

    def fails_while_another_process_opens_it() -> str:
        play(first, Calls(), "FFFFF")
        raise TransientGatewayError("down")

    # a call in flight while another process's calls open the shared breaker: its late failure
    # changes nothing and says nothing; the call that opened it says so, once
    with pytest.raises(TransientGatewayError):
        second.call(fails_while_another_process_opens_it)
    assert breaker_lines(caplog) == [OPENED_BY_THE_WINDOW]
    assert is_open(second)
