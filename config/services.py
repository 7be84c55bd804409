"""The services the one code base can run as (``OMS_SERVICE``; docs/architecture.md "Moving a context out").

``all`` (the default) is the whole platform in every process, as ``make run`` and ``make stack``
run it. Each other name is one service of ``make split``: the contexts it serves — their URLs,
their queues, their periodic tasks, their gauges — while the code and the installed apps stay
the same. The orders service carries the saga orchestrator, as the saga changes its order in
the same transaction.

A platform module: it names contexts but imports none, so the settings and the supervisor
(deploy/run_stack.py) can read it before anything else is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ALL = "all"
SERVICES: dict[str, tuple[str, ...]] = {
    ALL: ("orders", "sagas", "inventory", "payments", "queries"),
    "orders": ("orders", "sagas"),
    "payments": ("payments",),
    "inventory": ("inventory",),
    "queries": ("queries",),
}
# The seed's ports of the split services (``make split``; each overridable by <NAME>_SERVICE_PORT).
DEFAULT_PORTS = {"orders": 8081, "payments": 8082, "inventory": 8083, "queries": 8084}
# The PostgreSQL role each split service logs in as (manage.py create_service_roles).
ROLE_PREFIX = "oms_"
# Periodic tasks of no context: the event store's sweeps run in the orders service (one copy is
# enough); the money audit reads every context, so it runs only where they all are.
_TASK_OWNERS = {"eventstore": "orders", "config": ALL}


def contexts_of(service: str) -> tuple[str, ...]:
    """The contexts ``service`` serves; raises ``ValueError`` for an unknown name."""
    try:
        return SERVICES[service]
    except KeyError:
        raise ValueError(f"OMS_SERVICE={service!r}: expected one of {', '.join(SERVICES)}") from None


def task_queue(service: str) -> str:
    """The Celery queue of ``service``'s worker: each split service has its own on the shared broker."""
    return "oms.tasks" if service == ALL else f"oms.tasks.{service}"


def role_of(service: str) -> str:
    """The PostgreSQL role a split service connects as."""
    return f"{ROLE_PREFIX}{service}"


def task_runs_in(task: str, service: str) -> bool:
    """Whether the periodic task named ``task`` (its dotted path) is scheduled by ``service``."""
    if service == ALL:
        return True
    package = task.split(".", 1)[0]
    owner = _TASK_OWNERS.get(package)
    if owner is not None:
        return owner == service
    return package in contexts_of(service)


def beat_schedule(schedule: Mapping[str, Mapping[str, Any]], service: str) -> dict[str, Any]:
    """The entries of the Celery beat ``schedule`` that ``service`` runs."""
    return {name: dict(entry) for name, entry in schedule.items() if task_runs_in(entry["task"], service)}
