"""The saga's history as an order's owner may see it: each step attempt and each transition.

Read from the rows the orchestrator already keeps (``SagaStepAttempt``, ``SagaTransition``),
so the order page can show when each step was sent, how it was answered and why the state
changed, without replaying the saga's stream.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventstore.messages import utc_iso

from .models import SagaStepAttempt, SagaTransition


def saga_history(order_id: str) -> dict[str, list[dict[str, Any]]]:
    """``{"steps": [...], "transitions": [...]}`` of one order's saga, each oldest first."""
    attempts = (
        SagaStepAttempt.objects.filter(saga_id=order_id)
        .order_by("id")
        .values_list("step", "command", "attempt", "sent_at", "outcome", "answered_at", "answer", "error")
    )
    steps = [
        {
            "step": step,
            "command": command,
            "attempt": attempt,
            "sent_at": _iso(sent_at),
            "outcome": outcome,
            "answered_at": _iso(answered_at),
            "answer": answer,
            "error": error,
        }
        for step, command, attempt, sent_at, outcome, answered_at, answer, error in attempts
    ]
    transitions = [
        {"at": _iso(at), "from_state": from_state, "to_state": to_state, "step": step, "reason": reason}
        for at, from_state, to_state, step, reason in SagaTransition.objects.filter(saga_id=order_id)
        .order_by("id")
        .values_list("at", "from_state", "to_state", "step", "reason")
    ]
    return {"steps": steps, "transitions": transitions}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else utc_iso(moment)
