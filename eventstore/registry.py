"""Which context handles which message: a plain, greppable table filled by ``subscriptions.py``.

Each context's ``subscriptions.py`` registers its handlers with :func:`handles`; the relay's
topology, the RabbitMQ consumers and the in-process bus all read this one table.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .messages import Kind, Message

Handler = Callable[[Message], None]
# Called once per batch, before its handlers, with the batch's new messages: a context loads
# (and locks, in a fixed order) the aggregates of the whole batch with one statement per table.
Preparer = Callable[[Sequence[Message]], None]


@dataclass(frozen=True, slots=True)
class Subscription:
    """``context`` handles messages of ``kind``/``message_type`` with ``handler``."""

    context: str
    kind: Kind
    message_type: str
    handler: Handler

    @property
    def binding_key(self) -> str:
        """The topic binding: any producer of an event; the context itself for a command."""
        if self.kind == "command":
            return f"{self.context}.{self.message_type}"
        return f"*.{self.message_type}"


_subscriptions: dict[str, list[Subscription]] = defaultdict(list)
_preparers: dict[str, list[Preparer]] = defaultdict(list)
# The table by (kind, type, source) -> {context: handlers}, filled on first use: every message
# written asks who consumes it, so the lookup is a dictionary read, not a scan of the table.
_routes: dict[tuple[str, str, str], dict[str, list[Handler]]] = {}


def handles(
    context: str, *, events: tuple[str, ...] = (), commands: tuple[str, ...] = ()
) -> Callable[[Handler], Handler]:
    """Register the decorated function as ``context``'s handler of these messages."""

    def register(handler: Handler) -> Handler:
        for kind, names in (("event", events), ("command", commands)):
            for name in names:
                subscription = Subscription(context, kind, name, handler)  # type: ignore[arg-type]
                if subscription not in _subscriptions[context]:
                    _subscriptions[context].append(subscription)
        _routes.clear()
        return handler

    return register


def prepares(context: str) -> Callable[[Preparer], Preparer]:
    """Register the decorated function as one of ``context``'s batch preparers (see ``Preparer``)."""

    def register(preparer: Preparer) -> Preparer:
        if preparer not in _preparers[context]:
            _preparers[context].append(preparer)
        return preparer

    return register


def preparers_of(context: str) -> list[Preparer]:
    """The batch preparers of one context, in registration order."""
    return list(_preparers.get(context, ()))


def contexts() -> list[str]:
    """Every context that consumes messages."""
    return sorted(name for name, subs in _subscriptions.items() if subs)


def subscriptions_of(context: str) -> list[Subscription]:
    """The subscriptions of one context."""
    return list(_subscriptions.get(context, ()))


def handlers_for(context: str, message: Message) -> list[Handler]:
    """The handlers ``context`` runs for ``message``."""
    return list(_route(message).get(context, ()))


def consumers_of(message: Message) -> list[str]:
    """The contexts that handle ``message`` (in name order)."""
    return list(_route(message))


def _route(message: Message) -> dict[str, list[Handler]]:
    key = (message.kind, message.type, message.source)
    found = _routes.get(key)
    if found is None:
        found = {}
        for context in contexts():
            handlers = [
                sub.handler
                for sub in _subscriptions[context]
                if sub.kind == message.kind
                and sub.message_type == message.type
                and (sub.kind == "event" or message.source in ("", context))
            ]
            if handlers:
                found[context] = handlers
        _routes[key] = found
    return found


def unregister(context: str) -> None:
    """Forget a context's subscriptions (tests that register throwaway contexts)."""
    _subscriptions.pop(context, None)
    _preparers.pop(context, None)
    _routes.clear()
