"""The console API under ``/api/admin/`` (ADMIN only; docs/console.md): one thin view per operation.

Checks run in the contract's order: 401 (no or bad token) → 403 (not ADMIN) → 404 (no such
order or dead letter) → 400 (input) → 409 (the action does not apply to the current state, with
the reason). Every action is recorded as an event naming the admin.
"""

from __future__ import annotations

import uuid
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.permissions import IsAdmin
from config.problems import Conflict, ProblemSerializer
from eventstore import console as store
from eventstore.deadletters import AlreadyReplayed, dead_letter_stream, replay_dead_letter
from eventstore.models import DeadLetter
from sagas import public as sagas_public

from . import compose, serializers

TAG = "admin"
_ERRORS = {401: ProblemSerializer, 403: ProblemSerializer}
_ACTION_ERRORS = {
    **_ERRORS,
    404: ProblemSerializer,
    409: OpenApiResponse(ProblemSerializer, description="refused: the reason is in `detail`"),
}


class ConsoleView(APIView):
    """ADMIN tokens only: anonymous → 401, a USER → 403."""

    permission_classes = [IsAuthenticated, IsAdmin]


def _admin_name(request: Request) -> str:
    return str(getattr(request.user, "user_id", "") or getattr(request.user, "username", ""))


def _validated(shape: type[Any], data: Any) -> dict[str, Any]:
    # A query string as a plain dict: as form input, an empty value would silently mean "the
    # default" (``?which=``), which the schema does not allow.
    serializer = shape(data=data.dict() if hasattr(data, "dict") else data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class SagaAttentionListView(ConsoleView):
    """GET /api/admin/sagas: the sagas that need a look, most recently changed first."""

    @extend_schema(
        tags=[TAG],
        operation_id="admin_sagas_list",
        summary="Sagas that need attention, are stuck past their deadline, or failed in the last hour",
        parameters=[serializers.SagaListQuery],  # the query's own rules: choices, ranges, defaults
        responses={200: serializers.SagaListPage, 400: ProblemSerializer, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = _validated(serializers.SagaListQuery, request.query_params)
        kinds = sagas_public.KINDS if query["which"] == "all" else (query["which"],)
        page, size = query["page"], query["page_size"]
        count, rows = sagas_public.sagas_to_look_at(kinds=kinds, offset=(page - 1) * size, limit=size)
        return Response(
            {
                "count": count,
                "next": _page_url(request, page + 1) if page * size < count else None,
                "previous": _page_url(request, page - 1) if page > 1 else None,
                "results": rows,
            }
        )


def _page_url(request: Request, page: int) -> str:
    params = request.query_params.copy()
    params["page"] = str(page)
    return request.build_absolute_uri(f"{request.path}?{params.urlencode()}")


class OrderConsoleView(ConsoleView):
    """GET /api/admin/orders/{order_id}: everything about one order in one place."""

    @extend_schema(
        tags=[TAG],
        operation_id="admin_order_console",
        summary="One order's console: its events as a timeline and a causation tree, saga, payment "
        "and ledger, outbox rows, dead letters and trace id",
        responses={200: serializers.OrderConsoleOutput, 404: ProblemSerializer, **_ERRORS},
    )
    def get(self, request: Request, order_id: uuid.UUID) -> Response:
        page = compose.order_console(str(order_id))
        if page is None:
            raise exceptions.NotFound("There is no order with this id.")
        return Response(page)


class _InterventionView(ConsoleView):
    action = ""

    def intervene(self, request: Request, order_id: uuid.UUID, action: str) -> Response:
        try:
            done = sagas_public.intervene(str(order_id), action, admin=_admin_name(request))
        except LookupError:
            raise exceptions.NotFound("There is no saga for this order.") from None
        except sagas_public.SagaConflict as exc:
            raise Conflict(f"Refused: {exc}.", "intervention_refused", action=action) from None
        body = {"order_id": done.order_id, "action": done.action, "event": done.event, "saga": done.saga}
        return Response(body)


class RetryStepView(_InterventionView):
    """POST /api/admin/sagas/{order_id}/retry-step."""

    @extend_schema(
        tags=[TAG],
        operation_id="admin_saga_retry_step",
        summary="Send the current step's command(s) again (records SagaStepRetried naming the admin)",
        description="Refused (409) for a saga that ended (COMPLETED, COMPENSATED, FAILED).",
        request=None,
        responses={200: serializers.InterventionOutput, **_ACTION_ERRORS},
    )
    def post(self, request: Request, order_id: uuid.UUID) -> Response:
        return self.intervene(request, order_id, "retry_step")


class ForceCompensationView(_InterventionView):
    """POST /api/admin/sagas/{order_id}/force-compensation."""

    @extend_schema(
        tags=[TAG],
        operation_id="admin_saga_force_compensation",
        summary="Release the stock and refund any capture now (records SagaManuallyCompensated)",
        description="The order ends FAILED with reason ADMIN, or CANCELLED with `as_cancellation`. "
        "Refused (409) for a saga already COMPENSATED or FAILED, and for a COMPLETED one "
        "unless `as_cancellation`. On a COMPENSATING saga it sends the pending steps again.",
        request=serializers.ForceCompensationInput,
        responses={200: serializers.InterventionOutput, 400: ProblemSerializer, **_ACTION_ERRORS},
    )
    def post(self, request: Request, order_id: uuid.UUID) -> Response:
        data = _validated(serializers.ForceCompensationInput, request.data or {})
        action = "force_cancellation" if data["as_cancellation"] else "force_compensation"
        return self.intervene(request, order_id, action)


class MarkFailedView(_InterventionView):
    """POST /api/admin/sagas/{order_id}/mark-failed."""

    @extend_schema(
        tags=[TAG],
        operation_id="admin_saga_mark_failed",
        summary="End the saga FAILED without further compensation (records SagaManuallyFailed)",
        description="For a saga an operator settled by hand. Refused (409) for a saga that "
        "ended, and while it holds a capture it has not refunded (force compensation refunds it).",
        request=None,
        responses={200: serializers.InterventionOutput, **_ACTION_ERRORS},
    )
    def post(self, request: Request, order_id: uuid.UUID) -> Response:
        return self.intervene(request, order_id, "mark_failed")


class DeadLetterReplayView(ConsoleView):
    """POST /api/admin/dead-letters/{dead_letter_id}/replay."""

    @extend_schema(
        tags=[TAG],
        operation_id="admin_dead_letter_replay",
        summary="Send a dead letter again through the outbox (records DeadLetterReplayed naming the admin)",
        description="Same message id and body: contexts that handled it drop it, the one that "
        "failed acts. Refused (409) when it was replayed already.",
        request=None,
        responses={200: serializers.ReplayOutput, **_ACTION_ERRORS},
    )
    def post(self, request: Request, dead_letter_id: int) -> Response:
        try:
            row = replay_dead_letter(dead_letter_id, by=_admin_name(request))
        except DeadLetter.DoesNotExist:
            raise exceptions.NotFound("There is no dead letter with this id.") from None
        except AlreadyReplayed as exc:
            raise Conflict(f"Refused: {exc}.", "already_replayed") from None
        dead = DeadLetter.objects.get(id=dead_letter_id)
        recorded = store.events_of([dead_letter_stream(dead_letter_id)])[-1]
        event = {key: recorded[key] for key in ("type", "message_id", "aggregate_id", "version", "data")}
        body = {
            "dead_letter_id": dead.id,
            "message_id": str(dead.message_id),
            "outbox_id": row.id,
            "replayed_by": dead.replayed_by,
            "replayed_at": dead.replayed_at,
            "event": event,
        }
        return Response(body)


class SummaryView(ConsoleView):
    """GET /api/admin/summary: the console's front page."""

    @extend_schema(
        tags=[TAG],
        operation_id="admin_summary",
        summary="Projection lag, payment circuit breaker, dead letters, outbox backlog, sagas to look at",
        responses={200: serializers.SummaryOutput, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        return Response(compose.summary())
