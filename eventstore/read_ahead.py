"""Bulk reads for a consuming connection: what has arrived is read at once, not frame by frame.

py-amqp reads a frame with two ``recv`` calls of exactly its header's and its payload's size,
and changes the socket's timeout before each frame and back after it (two more system calls):
a delivery is three frames, so about twelve system calls per message. A consumer with
hundreds of messages prefetched has them all waiting in the socket. :func:`read_ahead` makes
one connection (a consumer's, never one driven by an event loop that polls the socket, such as
Celery's: frames read ahead would wait there unseen) read up to :data:`READ_AHEAD_BYTES` at a
time into py-amqp's own read buffer, and hand out a frame that is already complete in that
buffer without touching the socket or its timeout. A read that needs the socket still waits
with the caller's timeout, and a partial frame stays in the buffer as py-amqp keeps it.
"""

from __future__ import annotations

import errno
import struct
from typing import Any

from amqp.transport import TCPTransport
from kombu import Connection

READ_AHEAD_BYTES = 16 * 1024
_FRAME_HEADER = struct.Struct(">BHI")  # type, channel, payload size; then the payload and 0xCE
_RETRY_ERRNOS = (errno.EAGAIN, errno.EINTR)


def read_ahead(conn: Connection) -> None:
    """Make the (connected) ``conn`` read in bulk for as long as its transport lives.

    Plain TCP only: a TLS transport reads through its own layer, and keeps py-amqp's reads.
    """
    amqp_connection = conn.connection
    transport = amqp_connection.transport
    if not isinstance(transport, TCPTransport):
        return

    def read(n: int, initial: bool = False) -> bytes:
        # py-amqp's TCPTransport._read, asking the socket for more than the frame needs.
        buffer = transport._read_buffer
        try:
            while len(buffer) < n:
                try:
                    received = transport.sock.recv(max(n - len(buffer), READ_AHEAD_BYTES))
                except OSError as exc:
                    if exc.errno in _RETRY_ERRNOS:
                        if initial and transport.raise_on_initial_eintr:
                            raise TimeoutError() from exc
                        continue
                    raise
                if not received:
                    raise OSError("Server unexpectedly closed connection")
                buffer += received
        except BaseException:
            transport._read_buffer = buffer
            raise
        result, transport._read_buffer = buffer[:n], buffer[n:]
        return result

    def blocking_read(timeout: float | None = None) -> Any:
        if _holds_a_frame(transport._read_buffer):
            frame = transport.read_frame()
        else:
            with transport.having_timeout(timeout):
                frame = transport.read_frame()
        return amqp_connection.on_inbound_frame(frame)

    transport._read = read
    amqp_connection.blocking_read = blocking_read


def _holds_a_frame(buffer: bytes) -> bool:
    if len(buffer) < _FRAME_HEADER.size:
        return False
    _, _, size = _FRAME_HEADER.unpack_from(buffer)
    return len(buffer) >= _FRAME_HEADER.size + size + 1
