"""Graceful stop for the long-running transport commands."""

from __future__ import annotations

import signal
import threading


def stop_on_signals() -> threading.Event:
    """An event set on SIGTERM or SIGINT, so the loop finishes its batch and returns."""
    stopping = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stopping
