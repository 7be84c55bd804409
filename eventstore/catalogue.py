"""The event catalogue: every event type of every context, typed and versioned, registered once.

Pure Python (no Django), so each context's ``events.py`` and its pure ``domain.py`` can use it.
An event type is a frozen dataclass deriving from :class:`Event`, with two class attributes —
``event_type``, the name stored in the event table's ``event_type`` column and carried as the
message's ``type`` (never changed: stored events, the API and the web app use it), and
``schema_version``, the version of its fields — and one typed field per member of the stored
``event_data``. ``@register`` puts it in the catalogue.

Changing an event's fields means a new ``schema_version`` and an upcaster from the previous
one (:func:`register_upcaster`): events stored in an older version pass through the upcasters
when they are read (``eventstore.store``), so every reader sees the current shape. The schemas
are kept in ``eventstore/event_schemas.json`` (:func:`schemas`; ``manage.py event_schemas``),
and a test fails when a registered schema differs from the snapshot of its version.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar, is_typeddict

Data = dict[str, Any]
Upcaster = Callable[[Data], Data]


class Event:
    """Base of every event type (subclasses are ``@dataclass(frozen=True, slots=True, kw_only=True)``)."""

    __slots__ = ()

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    # Fields left out of the stored data when they are None (optional members of the contract).
    omitted_when_none: ClassVar[frozenset[str]] = frozenset()
    # Set by @register: the field names, in order (the cheap way to build the stored data).
    _fields: ClassVar[tuple[str, ...]] = ()


E = TypeVar("E", bound=type[Event])

_classes: dict[str, type[Event]] = {}
_upcasters: dict[tuple[str, int], Upcaster] = {}


class UnknownEvent(LookupError):
    """No event type of that name is registered."""


def register(cls: E) -> E:
    """Put an event class in the catalogue (a class decorator); one class per ``event_type``."""
    if not dataclasses.is_dataclass(cls) or not issubclass(cls, Event):
        raise TypeError(f"{cls.__name__} must be an Event dataclass")
    name = cls.event_type
    known = _classes.get(name)
    if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"event type {name} is registered twice ({known.__module__} and {cls.__module__})")
    cls._fields = tuple(field.name for field in dataclasses.fields(cls))
    _writers.pop(cls, None)
    _classes[name] = cls
    return cls


def unregister(name: str) -> None:
    """Forget an event type (tests that register a throwaway version)."""
    _classes.pop(name, None)


def event_class(name: str) -> type[Event]:
    """The class of event type ``name`` (its current version)."""
    try:
        return _classes[name]
    except KeyError:
        raise UnknownEvent(name) from None


def registered() -> dict[str, type[Event]]:
    """Every registered event type by name."""
    return dict(_classes)


def current_version(name: str) -> int:
    """The schema version events of type ``name`` are written in (1 for an unknown type)."""
    cls = _classes.get(name)
    return cls.schema_version if cls is not None else 1


def to_data(event: Event) -> Data:
    """The event's stored ``event_data``: its fields by name (no copy of their values).

    On the write path of every event: each class gets a function of its own, compiled once,
    that builds the dictionary as a literal would (about a third of a generic loop's time).
    """
    cls = type(event)
    writer = _writers.get(cls)
    if writer is None:
        writer = _writers[cls] = _compile_writer(cls)
    return writer(event)


_writers: dict[type[Event], Callable[[Event], Data]] = {}


def _compile_writer(cls: type[Event]) -> Callable[[Event], Data]:
    fields = [field.name for field in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if not all(name.isidentifier() for name in fields):
        raise TypeError(f"{cls.__name__}: field names must be identifiers")
    members = ", ".join(f"{name!r}: event.{name}" for name in fields)
    lines = ["def to_data(event):", f"    data = {{{members}}}"]
    for name in sorted(cls.omitted_when_none):
        lines += [f"    if data[{name!r}] is None:", f"        del data[{name!r}]"]
    lines.append("    return data")
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), namespace)  # noqa: S102 - built from the dataclass's own field names
    writer: Callable[[Event], Data] = namespace["to_data"]
    return writer


def from_data(name: str, version: int, data: Mapping[str, Any]) -> Event:
    """The event ``name`` stored in ``version`` with ``data``, upcast to the current version.

    Members the class does not know are ignored (events older than a member's removal); a
    missing member takes the field's default, and raises ``TypeError`` when it has none.
    """
    cls = event_class(name)
    if version < cls.schema_version:
        _, data = upcast(name, version, dict(data))
    return cls(**{key: data[key] for key in cls._fields if key in data})


def register_upcaster(name: str, from_version: int, upcaster: Upcaster) -> None:
    """Teach the catalogue to turn ``name``'s data of ``from_version`` into ``from_version + 1``."""
    _upcasters[(name, from_version)] = upcaster


def unregister_upcaster(name: str, from_version: int) -> None:
    """Forget an upcaster (tests)."""
    _upcasters.pop((name, from_version), None)


def upcasters() -> dict[tuple[str, int], Upcaster]:
    """Every registered upcaster by ``(event type, from version)``."""
    return dict(_upcasters)


def upcast(name: str, version: int, data: Data) -> tuple[int, Data]:
    """``(version, data)`` brought up to ``name``'s current version through its upcasters.

    A current event (the common case) costs one dictionary read and is returned as it is.
    Raises ``LookupError`` when an upcaster on the way is missing.
    """
    cls = _classes.get(name)
    if cls is None or version >= cls.schema_version:
        return version, data
    while version < cls.schema_version:
        step = _upcasters.get((name, version))
        if step is None:
            raise LookupError(f"no upcaster for {name} from version {version}")
        data = step(data)
        version += 1
    return version, data


# --- schemas (the snapshot in eventstore/event_schemas.json) ------------------------------------


def schema(cls: type[Event]) -> dict[str, str]:
    """``{field: type}`` of one event class, TypedDict members spelled out."""
    hints = typing.get_type_hints(cls)
    shape = {}
    for name in cls._fields:
        spelled = _spell(hints[name])
        shape[name] = f"{spelled} (omitted when None)" if name in cls.omitted_when_none else spelled
    return shape


Snapshot = dict[str, dict[str, dict[str, str]]]


def schemas() -> Snapshot:
    """``{event type: {version: {field: type}}}`` of every registered event's current version."""
    return {name: {str(cls.schema_version): schema(cls)} for name, cls in sorted(_classes.items())}


def schema_problems(snapshot: Snapshot) -> list[str]:
    """What keeps the registered events from matching ``snapshot`` (empty: they match).

    Each event's current version must be in the snapshot with the same fields and types, and
    every older version must be in it too, with an upcaster from it to the next one.
    """
    problems = []
    for name, cls in sorted(_classes.items()):
        versions = snapshot.get(name, {})
        kept = versions.get(str(cls.schema_version))
        if kept is None:
            problems.append(
                f"{name} v{cls.schema_version} is not in the snapshot: a new event or version "
                "(manage.py event_schemas --write adds it)"
            )
        elif kept != schema(cls):
            problems.append(
                f"{name} v{cls.schema_version} differs from its snapshot ({_difference(kept, schema(cls))}): "
                "a change of fields needs a new schema_version and an upcaster from the old one"
            )
        for older in range(1, cls.schema_version):
            if str(older) not in versions:
                problems.append(f"{name} v{older} is missing from the snapshot (keep every old version)")
            if (name, older) not in _upcasters:
                problems.append(f"{name} has no upcaster from v{older} to v{older + 1}")
    return problems


def merged_snapshot(snapshot: Snapshot) -> Snapshot:
    """``snapshot`` with the current version of every registered event added (old versions kept).

    Raises ``ValueError`` when a version already in the snapshot has other fields: a version's
    schema is never rewritten (bump ``schema_version`` instead).
    """
    merged = {name: dict(versions) for name, versions in snapshot.items()}
    for name, versions in schemas().items():
        for version, shape in versions.items():
            kept = merged.setdefault(name, {}).get(version)
            if kept is not None and kept != shape:
                raise ValueError(
                    f"{name} v{version} already has another schema ({_difference(kept, shape)}): "
                    "bump its schema_version and register an upcaster"
                )
            merged[name][version] = shape
    return {name: dict(sorted(merged[name].items(), key=_version_order)) for name in sorted(merged)}


def _version_order(item: tuple[str, dict[str, str]]) -> int:
    return int(item[0])


def _difference(kept: dict[str, str], now: dict[str, str]) -> str:
    gone = [f"-{key}" for key in kept if key not in now]
    new = [f"+{key}" for key in now if key not in kept]
    retyped = [f"{key}: {kept[key]} -> {now[key]}" for key in kept if key in now and kept[key] != now[key]]
    return ", ".join(gone + new + retyped) or "field order"


def _spell(hint: Any) -> str:
    if is_typeddict(hint):
        members = typing.get_type_hints(hint)
        return "{" + ", ".join(f"{key}: {_spell(value)}" for key, value in members.items()) + "}"
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return " | ".join(_spell(arg) for arg in typing.get_args(hint))
    if origin is not None:
        args = ", ".join(_spell(arg) for arg in typing.get_args(hint))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if hint is type(None):
        return "None"
    if hint is Any:
        return "Any"
    return getattr(hint, "__name__", str(hint))
