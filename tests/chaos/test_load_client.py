"""The chaos load client's API calls: an answer cut short counts as a lost connection."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from chaos.load import Api


@pytest.fixture
def dying_server() -> Iterator[int]:
    """A server that announces a body of 70 bytes, sends none and closes: the process answering
    was killed mid-response (the chaos suite's power cut)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    port = listener.getsockname()[1]
    stopping = threading.Event()
    head = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 70\r\n\r\n"

    def serve() -> None:
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                _read_request(conn)
                conn.sendall(head)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stopping.set()
        thread.join(timeout=5)
        listener.close()


def _read_request(conn: socket.socket) -> None:
    """The whole request, head and body: a close with unread bytes would send a reset instead of
    the short answer (the client writes its head and its body apart, so one recv may miss the body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk


def test_an_answer_cut_short_is_a_lost_connection_the_caller_retries(dying_server: int) -> None:
    # The callers retry an OSError with the same Idempotency-Key; an IncompleteRead (an
    # HTTPException, not an OSError) ended the whole chaos run instead.
    with pytest.raises(ConnectionError, match="cut short"):
        Api(dying_server).call("POST", "/api/orders", body={}, access="t", key="k")
