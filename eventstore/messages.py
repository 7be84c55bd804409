"""The message on the wire (docs/architecture.md "Messages"): one immutable shape for events and commands."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from . import catalogue

Kind = Literal["event", "command"]

EVENTS_EXCHANGE = "oms.events"
COMMANDS_EXCHANGE = "oms.commands"


@dataclass(frozen=True, slots=True)
class Message:
    """An event or a command as it travels between contexts."""

    message_id: str
    kind: Kind
    type: str
    aggregate_type: str
    aggregate_id: str
    data: dict[str, Any]
    occurred_at: str
    correlation_id: str = ""
    causation_id: str = ""
    version: int | None = None
    position: int | None = None
    source: str = ""
    headers: dict[str, str] = field(default_factory=dict, compare=False)
    # The version of the event's fields (eventstore.catalogue); a reader upcasts older ones.
    schema_version: int = 1

    @property
    def exchange(self) -> str:
        """The topic exchange this message is published to."""
        return EVENTS_EXCHANGE if self.kind == "event" else COMMANDS_EXCHANGE

    @property
    def routing_key(self) -> str:
        """``<context>.<Type>``: the producing context for events, the target for commands."""
        return f"{self.source}.{self.type}"

    def to_body(self) -> dict[str, Any]:
        """The JSON body of docs/architecture.md "Messages" (``schema_version`` only past 1)."""
        body = {
            "message_id": self.message_id,
            "kind": self.kind,
            "type": self.type,
            "aggregate_type": self.aggregate_type,
            "aggregate_id": self.aggregate_id,
            "version": self.version,
            "position": self.position,
            "occurred_at": self.occurred_at,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "data": self.data,
        }
        if self.schema_version != 1:
            body["schema_version"] = self.schema_version
        return body

    @classmethod
    def from_body(
        cls, body: dict[str, Any], *, routing_key: str = "", headers: dict[str, Any] | None = None
    ) -> Message:
        """Decode a wire body; raises ``InvalidMessage`` when it is not one.

        An event published in an older schema version is upcast to the current one.
        """
        try:
            kind = body["kind"]
            if kind not in ("event", "command"):
                raise InvalidMessage(f"unknown kind {kind!r}")
            data, schema_version = dict(body["data"]), int(body.get("schema_version") or 1)
            if kind == "event":
                schema_version, data = catalogue.upcast(str(body["type"]), schema_version, data)
            return cls(
                message_id=str(uuid.UUID(str(body["message_id"]))),
                kind=kind,
                type=str(body["type"]),
                aggregate_type=str(body["aggregate_type"]),
                aggregate_id=str(body["aggregate_id"]),
                data=data,
                occurred_at=str(body["occurred_at"]),
                correlation_id=str(body.get("correlation_id") or ""),
                causation_id=str(body.get("causation_id") or ""),
                version=_optional_int(body.get("version")),
                position=_optional_int(body.get("position")),
                source=routing_key.split(".", 1)[0] if routing_key else "",
                headers={k: str(v) for k, v in (headers or {}).items() if isinstance(v, str)},
                schema_version=schema_version,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidMessage(str(exc)) from exc

    def with_position(self, position: int) -> Message:
        """A copy carrying its global position in the event store."""
        return replace(self, position=position)


class InvalidMessage(ValueError):
    """A body that is not a message of docs/architecture.md "Messages" (a poison message)."""


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def utc_iso(moment: datetime) -> str:
    """ISO-8601 UTC with a ``Z``, as every message and API timestamp is written."""
    return moment.isoformat().replace("+00:00", "Z")
