"""A publish that hangs fails its batch well inside the relay's claim lease.

The relay talks to the real RabbitMQ through a TCP relay that can stop passing bytes — a
network (or a broker) that hangs mid-publish. Whether the confirms never come, the writes
block or the handshake never answers, the relay gives up within :func:`publish_timeout`
(half the claim lease here), leaves the rows pending for the next pass and never marks them
sent; before, a publish could wait 10 s for confirms (or forever on a blocked write) while its
claim expired and another relay published the same rows.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from kombu import Connection

from eventstore.models import OutboxMessage
from eventstore.publisher import ConfirmingPublisher
from eventstore.relay import publish_timeout, relay_once
from eventstore.topology import broker_connection
from tests.eventstore.conftest import send_probe
from tests.fixtures.stack import Stack

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]

CLAIM_SECONDS = 4  # so publish_timeout() is 2 s


class StallingProxy:
    """A TCP relay to RabbitMQ that passes bytes both ways until it is frozen."""

    def __init__(self, broker_url: str) -> None:
        parts = urlsplit(broker_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 5672)
        self.listener = socket.create_server(("127.0.0.1", 0))
        # A small receive window: a client's writes block once a few hundred KiB wait here.
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        port = self.listener.getsockname()[1]
        credentials = broker_url.split("://", 1)[1].split("@", 1)[0]
        self.url = urlunsplit((parts.scheme, f"{credentials}@127.0.0.1:{port}", parts.path, "", ""))
        self.flowing = threading.Event()
        self.flowing.set()
        self.closed = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def freeze(self) -> None:
        """Stop passing bytes, in both directions (what is in flight stays in the buffers)."""
        self.flowing.clear()

    def close(self) -> None:
        """Drop every connection, passing nothing more."""
        self.closed.set()
        for sock in [self.listener, *self.sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                return
            self.sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while self._flowing():
                data = source.recv(65536)
                if not data or not self._flowing():
                    return
                target.sendall(data)
        except OSError:
            return
        finally:
            if self.closed.is_set() or self.flowing.is_set():
                for sock in (source, target):
                    with contextlib.suppress(OSError):
                        sock.close()

    def _flowing(self) -> bool:
        # While frozen, hold on (reading nothing) until thawed or closed.
        while not self.flowing.wait(0.05):
            if self.closed.is_set():
                return False
        return not self.closed.is_set()


@pytest.fixture
def proxy() -> Iterator[StallingProxy]:
    stalling = StallingProxy(django_settings.BROKER_URL)
    yield stalling
    stalling.close()


@pytest.fixture
def lease(settings) -> float:  # type: ignore[no-untyped-def]
    settings.RELAY_CLAIM_SECONDS = CLAIM_SECONDS
    assert publish_timeout() == CLAIM_SECONDS / 2
    return float(CLAIM_SECONDS)


def _through(proxy: StallingProxy) -> ConfirmingPublisher:
    return ConfirmingPublisher(Connection(proxy.url, connect_timeout=5))


def _relay_timed(publisher: ConfirmingPublisher) -> tuple[float, object]:
    started = time.monotonic()
    try:
        result: object = relay_once(publisher, batch_size=500)
    except Exception as exc:  # the test looks at it
        result = exc
    return time.monotonic() - started, result


def _assert_pending_again(ids: list[str], *, attempts: int) -> list[OutboxMessage]:
    rows = list(OutboxMessage.objects.filter(message_id__in=ids))
    assert len(rows) == len(ids)
    assert all(row.sent_at is None and row.attempts == attempts for row in rows), [
        (row.sent_at, row.attempts) for row in rows
    ]
    return rows


def _published_later_by_another_relay(ids: list[str]) -> None:
    # once the pause after the failure is over, a relay that can reach the broker publishes them
    OutboxMessage.objects.filter(message_id__in=ids).update(claimed_until=None)
    other = ConfirmingPublisher(broker_connection())
    try:
        assert relay_once(other, batch_size=500).published == len(ids)
    finally:
        other.close()
    assert not OutboxMessage.objects.filter(message_id__in=ids, sent_at__isnull=True).exists()


def test_a_publish_whose_confirms_never_come_fails_the_batch_inside_the_lease(
    probe_stack: Stack, proxy: StallingProxy, lease: float
) -> None:
    # given a relay whose channel is open, then a network that stops answering
    publisher = _through(proxy)
    publisher.connect()
    ids = [send_probe("Touch") for _ in range(5)]
    proxy.freeze()

    # when it relays the batch
    elapsed, result = _relay_timed(publisher)

    # then it gives up after publish_timeout(), well before its claim would lapse
    assert elapsed < lease / 2 + 1.0 < lease, elapsed
    assert (result.claimed, result.published) == (5, 0), result  # type: ignore[attr-defined]
    rows = _assert_pending_again(ids, attempts=1)
    assert all("timed out waiting for publisher confirms" in row.last_error for row in rows)
    publisher.close()
    _published_later_by_another_relay(ids)


def test_a_publish_whose_writes_block_fails_the_batch_inside_the_lease(
    probe_stack: Stack, proxy: StallingProxy, lease: float
) -> None:
    # given more bytes to write than the frozen network can buffer (about 8 MiB)
    publisher = _through(proxy)
    publisher.connect()
    padding = "x" * 65536
    with transaction.atomic():
        ids = [send_probe("Touch", padding=padding) for _ in range(128)]
    proxy.freeze()

    elapsed, result = _relay_timed(publisher)

    # then the blocked write times out within the budget; the rows after it were never written
    assert elapsed < lease / 2 + 1.0 < lease, elapsed
    assert (result.claimed, result.published) == (128, 0), result  # type: ignore[attr-defined]
    rows = _assert_pending_again(ids, attempts=1)
    assert any("timed out publishing" in row.last_error for row in rows), {r.last_error for r in rows}
    assert any("not written" in row.last_error for row in rows)
    publisher.close()
    _published_later_by_another_relay(ids)


def test_a_broker_that_never_answers_the_handshake_costs_no_claim(
    probe_stack: Stack, proxy: StallingProxy, lease: float
) -> None:
    # given pending rows and a network that hangs before the AMQP handshake
    ids = [send_probe("Touch") for _ in range(3)]
    proxy.freeze()
    publisher = _through(proxy)

    elapsed, result = _relay_timed(publisher)

    # then the relay pass fails within the budget without claiming anything
    assert isinstance(result, Exception), result
    assert elapsed < lease / 2 + 1.0, elapsed
    rows = _assert_pending_again(ids, attempts=0)
    assert all(row.claimed_until is None for row in rows)
    publisher.close()
    _published_later_by_another_relay(ids)
