"""Shapes of the console API: query parameters, bodies and responses (for the OpenAPI description)."""

from __future__ import annotations

from rest_framework import serializers

from sagas.public import KINDS

MAX_PAGE_SIZE = 100
WHICH = ("all", *KINDS)


# --- input ----------------------------------------------------------------------------------------


class SagaListQuery(serializers.Serializer):
    which = serializers.ChoiceField(
        choices=WHICH,
        default="all",
        help_text="attention: parked (needs_attention); stuck: open and past its deadline; "
        "failed: order FAILED within the last hour; all: any of them",
    )
    page = serializers.IntegerField(min_value=1, max_value=10**6, default=1)
    page_size = serializers.IntegerField(min_value=1, max_value=MAX_PAGE_SIZE, default=20)


class ForceCompensationInput(serializers.Serializer):
    as_cancellation = serializers.BooleanField(
        default=False,
        help_text="false: the order ends FAILED (reason ADMIN); true: it ends CANCELLED "
        "(the only way for a COMPLETED order)",
    )


# --- output ---------------------------------------------------------------------------------------


class SagaListItem(serializers.Serializer):
    order_id = serializers.CharField()
    customer_id = serializers.CharField()
    state = serializers.CharField()
    step = serializers.CharField(allow_null=True)
    attempts = serializers.IntegerField()
    order_status = serializers.CharField()
    failure_reason = serializers.CharField(allow_null=True)
    needs_attention = serializers.BooleanField()
    deadline = serializers.DateTimeField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    reasons = serializers.ListField(child=serializers.ChoiceField(choices=KINDS))


class SagaListPage(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = SagaListItem(many=True)


class MessageOutput(serializers.Serializer):
    message_id = serializers.CharField()
    kind = serializers.ChoiceField(choices=("event", "command"))
    type = serializers.CharField()
    aggregate_id = serializers.CharField()
    at = serializers.CharField(help_text="ISO-8601 UTC")
    causation_id = serializers.CharField(help_text="the message that caused this one ('' for none)")
    position = serializers.IntegerField(required=False, help_text="events: global position in the store")
    version = serializers.IntegerField(required=False, help_text="events: version in its stream")
    trace_id = serializers.CharField(required=False)
    routing_key = serializers.CharField(required=False, help_text="commands: <context>.<Command>")
    # The metaclass moves fields off the class: this does not shadow Serializer.data.
    data = serializers.JSONField(help_text="card tokens are masked")  # type: ignore[assignment]


class CausationNode(serializers.Serializer):
    message_id = serializers.CharField()
    kind = serializers.CharField()
    type = serializers.CharField()
    aggregate_id = serializers.CharField()
    at = serializers.CharField()
    causation_id = serializers.CharField()
    children = serializers.ListField(child=serializers.JSONField(), help_text="nodes of the same shape")


class OrderConsoleOutput(serializers.Serializer):
    order_id = serializers.CharField()
    order = serializers.JSONField(allow_null=True, help_text="as GET /api/orders/{order_id}, without saga")
    saga = serializers.JSONField(
        allow_null=True, help_text="state, flags, deadline, transitions[], step_attempts[]"
    )
    reservation = serializers.JSONField(allow_null=True, help_text="state, items, expires_at")
    payment = serializers.JSONField(
        allow_null=True,
        help_text="payment (projection), attempts[] (one per charge call), ledger (the gateway's "
        "entry and refunds), reconciliation: agrees | running | late_capture | "
        "captured_unknown_to_ledger | refund_mismatch",
    )
    timeline = MessageOutput(many=True)
    causation_tree = CausationNode(many=True)
    outbox = serializers.ListField(child=serializers.JSONField())
    dead_letters = serializers.ListField(child=serializers.JSONField())
    trace_id = serializers.CharField(allow_null=True)
    trace_ids = serializers.ListField(child=serializers.CharField())
    trace_url = serializers.CharField(allow_null=True, help_text="TRACE_URL_TEMPLATE filled in, when set")


class RecordedEvent(serializers.Serializer):
    type = serializers.CharField()
    message_id = serializers.CharField()
    aggregate_id = serializers.CharField()
    version = serializers.IntegerField()
    data = serializers.JSONField(help_text="names the admin in 'admin'")  # type: ignore[assignment]


class InterventionOutput(serializers.Serializer):
    order_id = serializers.CharField()
    action = serializers.CharField()
    event = RecordedEvent()
    saga = serializers.JSONField(
        help_text="state, step, attempts, deadline, needs_attention after the action"
    )


class ReplayOutput(serializers.Serializer):
    dead_letter_id = serializers.IntegerField()
    message_id = serializers.CharField()
    outbox_id = serializers.IntegerField()
    replayed_by = serializers.CharField()
    replayed_at = serializers.DateTimeField()
    event = RecordedEvent()


class SummaryOutput(serializers.Serializer):
    as_of = serializers.DateTimeField()
    projections = serializers.ListField(
        child=serializers.JSONField(), allow_null=True, help_text="projection, events, seconds behind"
    )
    breaker = serializers.ListField(
        child=serializers.JSONField(), allow_null=True, help_text="gateway, state: CLOSED | OPEN | HALF_OPEN"
    )
    dead_letters = serializers.JSONField(allow_null=True, help_text="total, by_consumer (not replayed)")
    outbox_backlog = serializers.IntegerField(allow_null=True)
    sagas = serializers.JSONField(allow_null=True, help_text="attention, stuck, failed: counts")
    sources = serializers.DictField(child=serializers.BooleanField(), help_text="which readings answered")
