"""Routes of the console API, mounted at ``/api/admin/`` (exact paths, no trailing slash)."""

from django.urls import path

from .api import (
    DeadLetterReplayView,
    ForceCompensationView,
    MarkFailedView,
    OrderConsoleView,
    RetryStepView,
    SagaAttentionListView,
    SummaryView,
)

urlpatterns = [
    path("summary", SummaryView.as_view(), name="admin-summary"),
    path("sagas", SagaAttentionListView.as_view(), name="admin-sagas"),
    path("sagas/<uuid:order_id>/retry-step", RetryStepView.as_view(), name="admin-saga-retry-step"),
    path(
        "sagas/<uuid:order_id>/force-compensation",
        ForceCompensationView.as_view(),
        name="admin-saga-force-compensation",
    ),
    path("sagas/<uuid:order_id>/mark-failed", MarkFailedView.as_view(), name="admin-saga-mark-failed"),
    path("orders/<uuid:order_id>", OrderConsoleView.as_view(), name="admin-order-console"),
    path(
        "dead-letters/<int:dead_letter_id>/replay",
        DeadLetterReplayView.as_view(),
        name="admin-dead-letter-replay",
    ),
]
