"""A doorbell between writers and this process's in-process dispatcher, if it runs one.

Writers ring it after a commit that queued outbox rows; the embedded mode's dispatcher
installs itself as the listener. In the stack mode nobody listens and ringing costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable

_listener: Callable[[], None] | None = None


def listen(callback: Callable[[], None] | None) -> None:
    """Install (or with ``None`` remove) the one callback run by :func:`ring`."""
    global _listener
    _listener = callback


def ring() -> None:
    """Tell the listener, if any, that outbox rows are waiting."""
    if _listener is not None:
        _listener()
