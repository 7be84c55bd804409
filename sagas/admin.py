"""The operator's console for sagas (docs/architecture.md "The order saga" "Manual intervention").

One read-only page per saga shows its transitions, step attempts and the order's events; its
buttons (each confirmed on a page of its own, then POSTed with the CSRF token) retry the
current step, force compensation (as a failure or as a cancellation) or mark the saga failed —
each recorded as an event on the saga's stream naming the admin. The list's bulk menu offers
the same actions for many sagas. Dead letters and their replay live in the event store's admin;
the ops console API (docs/console.md) has the same actions.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from config.admin import holds_model_permission
from eventstore.store import load_stream

from . import console, domain
from .models import SagaInstance, SagaStepAttempt, SagaTransition


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
    """One read-only page per saga, with the interventions as buttons on it (each confirmed).

    Nobody saves a saga through a form (``has_change_permission`` is False for everyone, so
    the page has no Save buttons); the interventions need ``sagas.change_sagainstance``
    (``has_intervene_permission``) and go through :mod:`sagas.console`, as the API's do.
    """

    # Five columns: the list fits a 1280 px screen next to its filters.
    list_display = ("order_id", "state", "step", "order_status", "needs_attention")
    list_filter = ("state", "needs_attention", "order_status")
    search_fields = ("order_id", "customer_id")
    ordering = ("-created_at",)
    inlines = [TransitionInline, StepAttemptInline]
    # The same interventions for many sagas at once (the list's bulk menu).
    actions = ["retry_current_step", "force_compensation", "force_cancellation", "mark_failed"]
    exclude = ("payment_token",)
    change_form_template = "admin/sagas/sagainstance/change_form.html"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = [f.name for f in self.model._meta.fields if f.name != "payment_token"]
        return [*fields, "order_events", "saga_events"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_intervene_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """The interventions need sagas.change_sagainstance; the rows themselves stay read-only."""
        return holds_model_permission(request, SagaInstance, "change")

    def get_urls(self) -> list[URLPattern]:
        confirm = path(
            "<path:object_id>/intervene/<str:action>/",
            self.admin_site.admin_view(self.intervene_view),
            name="sagas_sagainstance_intervene",
        )
        return [confirm, *super().get_urls()]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        buttons = []
        if self.has_intervene_permission(request):
            buttons = [
                (label, reverse("admin:sagas_sagainstance_intervene", args=[object_id, action]))
                for action, label in INTERVENTIONS.items()
            ]
        return super().change_view(
            request, object_id, form_url, {**(extra_context or {}), "interventions": buttons}
        )

    def intervene_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        """GET: ask to confirm ``action`` on this saga; POST (with the CSRF token): carry it out."""
        saga = self.get_object(request, unquote(object_id))
        if saga is None or action not in INTERVENTIONS:
            raise Http404("no such saga or action")
        if not self.has_intervene_permission(request, saga):
            raise PermissionDenied
        page = reverse("admin:sagas_sagainstance_change", args=[quote(saga.order_id)])
        if request.method == "POST":
            try:
                done = console.intervene(saga.order_id, action, admin=request.user.get_username())
            except domain.SagaRuleViolation as exc:
                self.message_user(request, f"Refused: {exc}.", messages.WARNING)
            else:
                recorded, state = done.event["type"], done.saga["state"]
                self.message_user(
                    request,
                    f"{INTERVENTIONS[action]}: recorded {recorded}; the saga is {state}.",
                    messages.SUCCESS,
                )
            return HttpResponseRedirect(page)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{INTERVENTIONS[action]}?",
            "saga": saga,
            "action_label": INTERVENTIONS[action],
            "action_help": _HELP[action],
            "cancel_url": page,
        }
        return TemplateResponse(request, "admin/sagas/sagainstance/intervene_confirmation.html", context)

    @admin.display(description="Order events")
    def order_events(self, obj: SagaInstance) -> str:
        return _events_table(obj.order_id)

    @admin.display(description="Saga events")
    def saga_events(self, obj: SagaInstance) -> str:
        return _events_table(f"saga-{obj.order_id}")

    @admin.action(description="Retry the current step", permissions=["intervene"])
    def retry_current_step(self, request: HttpRequest, queryset: QuerySet[SagaInstance]) -> None:
        self._act(request, queryset, console.RETRY_STEP)

    @admin.action(description="Force compensation (order FAILED, reason ADMIN)", permissions=["intervene"])
    def force_compensation(self, request: HttpRequest, queryset: QuerySet[SagaInstance]) -> None:
        self._act(request, queryset, console.FORCE_COMPENSATION)

    @admin.action(
        description="Force compensation as a cancellation (order CANCELLED)", permissions=["intervene"]
    )
    def force_cancellation(self, request: HttpRequest, queryset: QuerySet[SagaInstance]) -> None:
        self._act(request, queryset, console.FORCE_CANCELLATION)

    @admin.action(description="Mark failed (no further compensation)", permissions=["intervene"])
    def mark_failed(self, request: HttpRequest, queryset: QuerySet[SagaInstance]) -> None:
        self._act(request, queryset, console.MARK_FAILED)

    def _act(self, request: HttpRequest, queryset: QuerySet[SagaInstance], action: str) -> None:
        admin_name = request.user.get_username()
        done, refused = 0, []
        for order_id in queryset.values_list("order_id", flat=True):
            try:
                console.intervene(order_id, action, admin=admin_name)
                done += 1
            except domain.SagaRuleViolation as exc:
                refused.append(f"{order_id}: {exc}")
        if done:
            self.message_user(request, f"{done} saga(s) updated.", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, reason, messages.WARNING)


# The buttons of the saga page, in this order.
INTERVENTIONS = {
    console.RETRY_STEP: "Retry the current step",
    console.FORCE_COMPENSATION: "Force compensation",
    console.FORCE_CANCELLATION: "Force compensation as a cancellation",
    console.MARK_FAILED: "Mark failed",
}

_HELP = {
    console.RETRY_STEP: "Sends the current step's command(s) again and clears needs_attention.",
    console.FORCE_COMPENSATION: (
        "Releases the stock and refunds any capture; the order ends FAILED (reason ADMIN)."
    ),
    console.FORCE_CANCELLATION: "Releases the stock and refunds any capture; the order ends CANCELLED.",
    console.MARK_FAILED: (
        "Ends the saga FAILED without further compensation (refused while a capture is not refunded)."
    ),
}


def _events_table(stream_id: str) -> str:
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
        ((m.version, m.occurred_at, m.type, m.data) for m in load_stream(stream_id)),
    )
    return format_html(
        "<table><tr><th>version</th><th>at</th><th>type</th><th>data</th></tr>{}</table>", rows
    )
