"""OpenTelemetry set-up: one tracer provider per process, made after fork.

A ``BatchSpanProcessor`` owns a thread, and threads do not survive ``fork``: gunicorn calls
:func:`setup_tracing` from ``post_fork`` (config/gunicorn.conf.py), Celery from
``worker_process_init`` and ``beat_init`` (config/celery_app.py), the consumer, relay and
``serve_embedded`` commands when they start. The master processes never set a provider, so no
child inherits a dead one.

Spans go to ``OTEL_EXPORTER_OTLP_ENDPOINT`` over OTLP/HTTP (Jaeger, Tempo and the collector
ingest it) and, when ``OTEL_SPANS_FILE`` is set, to that file as JSON lines — handy on a
laptop without Jaeger, and how the test suite follows one order across processes. Sampling
is parent-based with the ratio ``OTEL_TRACES_SAMPLER_ARG`` (1.0 in development, 0.1 in
production), so a sampled order keeps all its spans in every process. A process with no
exporter records no span at all (trace ids still propagate).

The relay's periodic poll (the Celery task ``eventstore.tasks.relay_outbox``, sent by beat
every few seconds) is never a trace of its own (:class:`QuietPolls`): it would be one span,
most often for a poll that found nothing, and what it does publish is traced anyway, in the
trace of each message's origin (its publish span continues the outbox row's context).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, get_current_span
from opentelemetry.util.types import Attributes

logger = logging.getLogger(__name__)

_configured_pid: int | None = None
_lock = threading.Lock()


def setup_tracing(
    *,
    component: str,
    instrument_django: bool = False,
    instrument_celery: bool = False,
    processors: Sequence[SpanProcessor] = (),
) -> TracerProvider | None:
    """Install this process's tracer provider and instrumentation (once per process).

    ``component`` names the process type (web, consumer, relay, worker) in the resource.
    Returns the provider, or ``None`` when this process already has one.
    """
    global _configured_pid
    with _lock:
        if _configured_pid == os.getpid():
            return None
        _configured_pid = os.getpid()
    processors = [*_configured_processors(), *processors]
    provider = TracerProvider(
        resource=Resource.create(
            {
                "service.name": settings.OTEL_SERVICE_NAME,
                "service.namespace": "oms",
                "oms.component": component,
            }
        ),
        # With nowhere to send spans, record none: ids and traceparent still flow (events,
        # logs and messages keep their trace id), but no span is built only to be dropped.
        sampler=QuietPolls(ParentBased(TraceIdRatioBased(float(settings.OTEL_TRACES_SAMPLER_ARG))))
        if processors
        else ALWAYS_OFF,
    )
    for processor in processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _instrument(provider, django=instrument_django, celery=instrument_celery)
    logger.info("tracing set up", extra={"component": component})
    return provider


# Root spans never recorded: the relay's periodic poll, sent by beat and run by a worker (span
# names of the Celery instrumentation). Its run inherits beat's decision, so both are listed.
QUIET_ROOT_SPANS = frozenset(
    {"apply_async/eventstore.tasks.relay_outbox", "run/eventstore.tasks.relay_outbox"}
)


class QuietPolls(Sampler):
    """Drops the root spans named in ``QUIET_ROOT_SPANS``; asks ``delegate`` about every other span.

    Only roots: a span of that name continuing a sampled trace is kept. The children of a
    dropped root are dropped with it by the parent-based delegate.
    """

    def __init__(self, delegate: Sampler) -> None:
        self._delegate = delegate

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if name in QUIET_ROOT_SPANS and not get_current_span(parent_context).get_span_context().is_valid:
            return SamplingResult(Decision.DROP)
        return self._delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"QuietPolls{{{self._delegate.get_description()}}}"


def _configured_processors() -> list[SpanProcessor]:
    processors: list[SpanProcessor] = []
    endpoint = str(settings.OTEL_EXPORTER_OTLP_ENDPOINT or "")
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processors.append(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")))
    spans_file = os.environ.get("OTEL_SPANS_FILE", "")
    if spans_file:
        processors.append(SimpleSpanProcessor(JsonLinesSpanExporter(spans_file)))
    return processors


def _instrument(provider: TracerProvider, *, django: bool, celery: bool) -> None:
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    if not PsycopgInstrumentor().is_instrumented_by_opentelemetry:
        PsycopgInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    if django:
        from opentelemetry.instrumentation.django import DjangoInstrumentor

        if not DjangoInstrumentor().is_instrumented_by_opentelemetry:
            DjangoInstrumentor().instrument(tracer_provider=provider)
    if celery:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        if not CeleryInstrumentor().is_instrumented_by_opentelemetry:
            CeleryInstrumentor().instrument(tracer_provider=provider)


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span to a file as one JSON object per line (several processes may share it)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = "".join(json.dumps(span_record(span), separators=(",", ":")) + "\n" for span in spans)
        with self._lock, open(self.path, "a", encoding="utf-8") as out:
            # One write of whole lines in append mode: lines of processes do not interleave.
            out.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing is buffered."""


def span_record(span: ReadableSpan) -> dict[str, object]:
    """The fields of a span that tell how it connects: ids, parent, name, kind, attributes."""
    context = span.get_span_context()
    parent = span.parent
    return {
        "name": span.name,
        "trace_id": format(context.trace_id, "032x") if context else "",
        "span_id": format(context.span_id, "016x") if context else "",
        "parent_span_id": format(parent.span_id, "016x") if parent else None,
        "kind": span.kind.name,
        "component": span.resource.attributes.get("oms.component", ""),
        "pid": os.getpid(),
        "attributes": {key: _plain(value) for key, value in (span.attributes or {}).items()},
    }


def _plain(value: object) -> object:
    return value if isinstance(value, str | int | float | bool) else str(value)
