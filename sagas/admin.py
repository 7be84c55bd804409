"""The operator's console for sagas (README "The order saga" "Manual intervention").

One read-only page per saga shows its transitions, step attempts and the order's events; the
actions retry the current step, force compensation (as a failure or as a cancellation) or
mark the saga failed — each recorded as an event on the saga's stream naming the admin.
Dead letters and their replay live in the event store's admin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from eventstore.store import load_stream

from . import domain, handlers
from .models import SagaInstance, SagaStepAttempt, SagaTransition

Decision = Callable[[domain.Saga, Any], list[domain.Effect]]


class TransitionInline(admin.TabularInline):
    model = SagaTransition
    extra = 0
    can_delete = False
    fields = ("at", "from_state", "to_state", "step", "reason", "cause_id")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class StepAttemptInline(admin.TabularInline):
    model = SagaStepAttempt
    extra = 0
    can_delete = False
    fields = (
        "step",
        "command",
        "attempt",
        "sent_at",
        "outcome",
        "answered_at",
        "answer",
        "error",
        "message_id",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SagaInstance)
class SagaInstanceAdmin(admin.ModelAdmin):
    list_display = ("order_id", "state", "step", "attempts", "deadline", "needs_attention", "order_status")
    list_filter = ("state", "needs_attention", "order_status")
    search_fields = ("order_id", "customer_id")
    ordering = ("-created_at",)
    inlines = [TransitionInline, StepAttemptInline]
    # Interventions need sagas.change_sagainstance (has_change_permission); the fields stay
    # read-only either way, a viewer sees the page without the actions.
    actions = ["retry_current_step", "force_compensation", "force_cancellation", "mark_failed"]
    exclude = ("payment_token",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = [f.name for f in self.model._meta.fields if f.name != "payment_token"]
        return [*fields, "order_events", "saga_events"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Order events")
    def order_events(self, obj: SagaInstance) -> str:
        return _events_table(obj.order_id)

    @admin.display(description="Saga events")
    def saga_events(self, obj: SagaInstance) -> str:
        return _events_table(f"saga-{obj.order_id}")

    @admin.action(description="Retry the current step", permissions=["change"])
    def retry_current_step(self, request: HttpRequest, queryset: QuerySet[SagaInstance]) -> None:
        admin_name = request.user.get_username()
        self._act(
            request,
            queryset,
            lambda s, now: s.retry_step(admin=admin_name, now=now, timing=handlers.timing()),
        )

    @admin.action(description="Force compensation (order FAILED, reason ADMIN)", permissions=["change"])
    def force_compensation(self, request: HttpRequest, queryset: QuerySet[SagaInstance]) -> None:
        self._force(request, queryset, as_cancellation=False)

    @admin.action(
        description="Force compensation as a cancellation (order CANCELLED)", permissions=["change"]
    )
    def force_cancellation(self, request: HttpRequest, queryset: QuerySet[SagaInstance]) -> None:
        self._force(request, queryset, as_cancellation=True)

    @admin.action(description="Mark failed (no further compensation)", permissions=["change"])
    def mark_failed(self, request: HttpRequest, queryset: QuerySet[SagaInstance]) -> None:
        admin_name = request.user.get_username()
        self._act(
            request,
            queryset,
            lambda s, now: s.mark_failed(admin=admin_name, now=now, timing=handlers.timing()),
        )

    def _force(
        self, request: HttpRequest, queryset: QuerySet[SagaInstance], *, as_cancellation: bool
    ) -> None:
        admin_name = request.user.get_username()
        self._act(
            request,
            queryset,
            lambda s, now: s.force_compensation(
                admin=admin_name, as_cancellation=as_cancellation, now=now, timing=handlers.timing()
            ),
        )

    def _act(self, request: HttpRequest, queryset: QuerySet[SagaInstance], decision: Decision) -> None:
        done, refused = 0, []
        for order_id in queryset.values_list("order_id", flat=True):
            try:
                with transaction.atomic():
                    handlers.decide(order_id, decision, cause_id="")
                done += 1
            except domain.SagaRuleViolation as exc:
                refused.append(f"{order_id}: {exc}")
        if done:
            self.message_user(request, f"{done} saga(s) updated.", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, reason, messages.WARNING)


def _events_table(stream_id: str) -> str:
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
        ((m.version, m.occurred_at, m.type, m.data) for m in load_stream(stream_id)),
    )
    return format_html(
        "<table><tr><th>version</th><th>at</th><th>type</th><th>data</th></tr>{}</table>", rows
    )
