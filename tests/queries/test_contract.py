"""The read side's declared events (queries/contract.py) agree with the event catalogue.

queries imports neither orders, sagas nor payments, so it names the events it projects itself;
this is what keeps those names and members from drifting from the producers' events.
"""

from __future__ import annotations

import dataclasses

from eventstore import catalogue
from queries import contract
from queries.projections import PROJECTIONS


def test_every_event_the_read_side_reads_is_in_the_catalogue_with_the_members_it_uses() -> None:
    for event_type, (version, members) in contract.READS.items():
        cls = catalogue.event_class(event_type)
        fields = {field.name for field in dataclasses.fields(cls)}
        assert cls.schema_version == version, f"{event_type}: the read side reads v{version}"
        assert set(members) <= fields, f"{event_type} lacks {set(members) - fields}"


def test_the_projections_subscribe_to_exactly_the_declared_events() -> None:
    projected = {event_type for projection in PROJECTIONS.values() for event_type in projection.event_types}
    assert projected == set(contract.READS) == set(contract.ORDER_EVENTS + contract.PAYMENT_EVENTS)
