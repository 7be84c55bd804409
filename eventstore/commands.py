"""Validating a command's data against its serializer, the contract's one definition of it.

A context's subscriptions validate each command they receive before acting on it; a command
that breaks the contract raises :class:`InvalidCommand` (the consumer retries it, then sends it
to the dead letters).
"""

from __future__ import annotations

import threading
from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.serializers import Serializer

from .messages import Message


class InvalidCommand(ValueError):
    """A command whose data breaks the contract (it goes to the dead letters)."""


class _Validators(threading.local):
    def __init__(self) -> None:
        self.instances: dict[type[Serializer], Serializer] = {}


_validators = _Validators()


def validated(serializer_class: type[Serializer], message: Message) -> dict[str, Any]:
    """The command's data as ``serializer_class`` validates it; raises :class:`InvalidCommand`."""
    try:
        return validate(serializer_class, message.data)
    except ValidationError as exc:
        raise InvalidCommand(f"{message.type} {message.message_id}: {exc.detail}") from exc


def validate(serializer_class: type[Serializer], data: Any) -> dict[str, Any]:
    """``data`` as ``serializer_class`` validates it; raises DRF's ``ValidationError``, with the
    errors ``is_valid(raise_exception=True)`` would give.

    One serializer per class and thread, validating with ``run_validation`` (which keeps no
    state on it): DRF deep-copies a serializer's fields for every new instance, and that cost
    more than the validation itself (a consumer's batch, an order's placement). The serializer
    must not read a request from its context.
    """
    serializer = _validators.instances.get(serializer_class)
    if serializer is None:
        serializer = _validators.instances[serializer_class] = serializer_class()
    return dict(serializer.run_validation(data))
