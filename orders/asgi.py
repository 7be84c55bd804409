"""POST /api/orders as a thin ASGI endpoint: the DRF view's contract without Django's request cycle.

Placing orders is the one hot write of the API (issue 11: 1,000 orders/s on about one core).
Through Django and DRF a placement costs ~3 ms of CPU before any SQL, most of it in machinery
this one operation does not need; here it costs the checks themselves. Nothing of the
contract is written twice — every rule is the view's own code, called directly:

- ``OrderPlaceView.initial`` — content negotiation, the JWT check with revocations and the
  user's current state (config/authentication.py, orders/sessions.py), ``IsAuthenticated``,
  the throttles (config/throttling.py);
- the body through DRF's ``Request`` and the strict parser (config/parsers.py); validation,
  ownership and the Idempotency-Key (:func:`orders.api.placement_of`, the same
  ``PlaceOrderInput``); the answer or error (:func:`orders.api.answer_to`, the view's
  ``handle_exception`` → config/problems.py) and the view's response headers;
- of the middleware, what shapes an API response, as the middleware's own methods: the body
  limit (config/middleware.py), the caller in log lines, the security headers, CSP,
  ``X-Frame-Options``, ``Content-Length``, the Prometheus HTTP metrics, and Django's log line
  for an error response. The rest does not apply to this path (sessions, CSRF — DRF views
  are exempt —, Django's auth and messages, login lockout, static files); a middleware added
  to settings that this module does not know stops the process at start-up until it is
  classified here.

The request's checks run on one of ``ORDER_INTAKE_THREADS`` threads (they wait on Redis, and
on the database when the caller's state is not cached), then the placement waits on the event
loop for its batch (orders/intake.py), written by one of ``ORDER_BATCH_WRITERS`` threads, each
keeping a database connection: a web worker holds that many, not one per waiting request. The
answer is built on the event loop itself: it reads nothing.
``ORDER_INTAKE_THREADS = 0`` runs both on Django's thread for synchronous code instead (the
test suite: its transaction belongs to that thread).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.asgi import ASGIRequest
from django.core.handlers.exception import response_for_exception
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.urls import resolve
from django.utils.log import log_response
from django.utils.module_loading import import_string
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind
from rest_framework.request import Request
from rest_framework.response import Response

from config.connections import close_thread_connections, drop_closed_connections
from config.logging import caller_context, carried_user, log_context
from config.middleware import limits_refusal, max_body_bytes
from config.problems import PayloadTooLarge

from . import api, intake

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

PATH = "/api/orders"
DEFAULT_THREADS = 16

# The middleware of settings.MIDDLEWARE and what becomes of it on this path.
_APPLIED = (  # MiddlewareMixin classes whose process_request/view/response hooks run here
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
)
_DONE_HERE = {
    "config.logging.RequestLogContextMiddleware": "the caller is bound with caller_context",
    "config.middleware.RequestLimitsMiddleware": "limits_refusal runs before the body is read",
    "config.connections.ClosedConnectionMiddleware": "a batch's writer drops closed connections first",
    # Added by config/telemetry.py when tracing is set up: the endpoint opens the server span.
    "opentelemetry.instrumentation.django.middleware.otel_middleware._DjangoMiddleware": "a server span",
}
_NOT_APPLICABLE = {
    "whitenoise.middleware.WhiteNoiseMiddleware": "serves static files only",
    "django.contrib.sessions.middleware.SessionMiddleware": "the API reads no session",
    "django.middleware.csrf.CsrfViewMiddleware": "DRF views are CSRF-exempt (bearer tokens)",
    "django.contrib.auth.middleware.AuthenticationMiddleware": "DRF authenticates the token",
    "django.contrib.messages.middleware.MessageMiddleware": "the API sends no messages",
    "axes.middleware.AxesMiddleware": "login lockout: the login view only",
}


class PlaceOrderEndpoint:
    """The ASGI application of POST /api/orders (config/asgi.py routes it here)."""

    def __init__(self) -> None:
        unknown = [
            name
            for name in settings.MIDDLEWARE
            if name not in _APPLIED and name not in _DONE_HERE and name not in _NOT_APPLICABLE
        ]
        if unknown:
            raise ImproperlyConfigured(f"orders/asgi.py does not know what {unknown} does on {PATH}")
        applied = [name for name in settings.MIDDLEWARE if name in _APPLIED]
        self._middleware = [import_string(name)(_unreachable) for name in applied]
        # Where the request limits sit: a refusal passes back through the middleware before them only.
        limits = settings.MIDDLEWARE.index("config.middleware.RequestLimitsMiddleware")
        self._limits_at = len([name for name in applied if settings.MIDDLEWARE.index(name) < limits])
        self._match = resolve(PATH)
        view_class = getattr(self._match.func, "cls", None)
        if view_class is None or not issubclass(view_class, api.OrderPlaceView):
            raise ImproperlyConfigured(f"{PATH} is not served by OrderPlaceView")
        self._view_class: type[api.OrderPlaceView] = view_class
        threads = int(getattr(settings, "ORDER_INTAKE_THREADS", DEFAULT_THREADS))
        writers = int(getattr(settings, "ORDER_BATCH_WRITERS", intake.DEFAULT_BATCH_WRITERS))
        # Two pools: a check waits on Redis, a batch on its commit; neither waits behind the other.
        self._checks = ThreadPoolExecutor(threads, thread_name_prefix="orders-checks") if threads else None
        self._writers = ThreadPoolExecutor(writers, thread_name_prefix="orders-batch") if threads else None

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        with _tracer.start_as_current_span(
            f"POST {PATH.lstrip('/')}",
            context=extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": "POST", "http.route": PATH.lstrip("/")},
        ) as span:
            status = await self._serve(scope, receive, send)
            span.set_attribute("http.response.status_code", status)

    async def _serve(self, scope: dict[str, Any], receive: Receive, send: Send) -> int:
        meta = _meta(scope)
        refusal = limits_refusal(meta, scope["path"])
        try:
            body = b"" if refusal is not None else await _read_body(receive, max_body_bytes())
        except _ClientGone:
            return 499
        request = ASGIRequest(scope, io.BytesIO(body or b""))
        request.resolver_match = self._match
        if body is None:
            response = await self._run_sync(self._too_large, request)
        else:
            started = await self._run_sync(self._start, request, refusal)
            if isinstance(started, HttpResponseBase):
                response = started
            else:
                view, placement = started
                outcome = await intake.place_async(placement, self._write)
                # On the event loop: the answer waits on nothing, and a hop to a thread costs
                # more than building it.
                response = self._finish(request, view, placement, outcome)
        await _send(send, response)
        return response.status_code

    def _run_sync(self, function: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        """Run a step of the request's checks on a thread, inside the request's trace."""
        if self._checks is None:
            return sync_to_async(function, thread_sensitive=True)(*args)
        # Not in a copy of the request's whole context: Django keeps a thread's cache client and
        # database connection in context variables, and a fresh copy per request would build
        # them anew every time. The span is what the thread needs from the request.
        trace_context = otel_context.get_current()
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._checks, _checking, trace_context, function, *args)

    def _write(self, function: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        """Write a batch on a writer thread (each keeps its database connection)."""
        if self._writers is None:
            return sync_to_async(function, thread_sensitive=True)(*args)
        return asyncio.get_running_loop().run_in_executor(self._writers, _writing, function, *args)

    # --- on a thread ---------------------------------------------------------------------------

    def _start(
        self, request: HttpRequest, refusal: HttpResponseBase | None
    ) -> tuple[api.OrderPlaceView, intake.Placement] | HttpResponseBase:
        """Up to the placement: the middleware's request hooks (and limits), then the view's checks.

        A response from a middleware (or the limits' refusal) goes back only through the
        middleware before it, as in Django's chain.
        """
        try:
            for index, middleware in enumerate(self._middleware):
                if index == self._limits_at and refusal is not None:
                    return self._respond(request, refusal, self._middleware[:index])
                found = getattr(middleware, "process_request", None) and middleware.process_request(request)
                if found:
                    return self._respond(request, found, self._middleware[: index + 1])
            if refusal is not None:
                return self._respond(request, refusal)
            for middleware in self._middleware:
                if hasattr(middleware, "process_view"):
                    middleware.process_view(request, self._match.func, (), {})
        except Exception as exc:  # noqa: BLE001 - e.g. a refused user agent: Django's own answer
            return self._respond(request, response_for_exception(request, exc))
        view = self._view_class()
        view.setup(request)
        # As APIView.dispatch does, up to the handler.
        drf_request = view.initialize_request(request)
        view.request = drf_request
        view.headers = view.default_response_headers
        caller = None
        try:
            view.initial(drf_request)
            caller = _user_id(drf_request)
            # The placement keeps the caller (baggage in its trace context) for its order's lines.
            with caller_context(caller):
                return view, api.placement_of(drf_request)
        except Exception as exc:  # noqa: BLE001 - the view's own exception handling decides
            error = exc
        with log_context(user_id=caller):  # the refusal's log line names the caller
            return self._view_response(request, view, lambda: view.handle_exception(error))

    def _finish(
        self,
        request: HttpRequest,
        view: api.OrderPlaceView,
        placement: intake.Placement,
        outcome: intake.Outcome,
    ) -> HttpResponseBase:
        """The answer once the placement's batch committed."""

        def answer() -> Response:
            try:
                return api.answer_to(placement, outcome)
            except Exception as exc:  # noqa: BLE001 - as the view would handle it
                return view.handle_exception(exc)

        with log_context(user_id=carried_user(placement.trace)):  # a refusal's line names the caller
            return self._view_response(request, view, answer)

    def _too_large(self, request: HttpRequest) -> HttpResponseBase:
        """A body without (or beyond) its declared length that outgrew the limit while read."""
        view = self._view_class()
        view.setup(request)
        view.request = view.initialize_request(request)
        view.headers = view.default_response_headers
        return self._view_response(request, view, lambda: view.handle_exception(PayloadTooLarge()))

    def _view_response(
        self, request: HttpRequest, view: api.OrderPlaceView, respond: Callable[[], Response]
    ) -> HttpResponseBase:
        response: HttpResponseBase
        try:
            response = view.finalize_response(view.request, respond()).render()
        except Exception as exc:  # noqa: BLE001 - Django's answer to an unhandled error (500)
            for middleware in self._middleware:
                if hasattr(middleware, "process_exception"):
                    middleware.process_exception(request, exc)
            response = response_for_exception(request, exc)
        return self._respond(request, response)

    def _respond(
        self, request: HttpRequest, response: HttpResponseBase, chain: list[Any] | None = None
    ) -> HttpResponseBase:
        """The response as the middleware leaves it (its response hooks, innermost first)."""
        for middleware in reversed(self._middleware if chain is None else chain):
            if hasattr(middleware, "process_response"):
                response = middleware.process_response(request, response)
        if response.status_code >= 400 and not getattr(response, "_has_been_logged", False):
            log_response(
                "%s: %s",
                response.reason_phrase,
                request.path,
                response=response,  # type: ignore[arg-type]
                request=request,
            )
        return response


class _ClientGone(Exception):
    """The client disconnected before its body was read: there is no one to answer."""


def _checking(trace_context: otel_context.Context, function: Callable[..., Any], *args: Any) -> Any:
    """A step of a request's checks: it needs the database only when the caller's state is not
    cached, so a connection opened for that is closed again (the threads are many)."""
    token = otel_context.attach(trace_context)
    try:
        return function(*args)
    finally:
        otel_context.detach(token)
        close_thread_connections()


def _writing(function: Callable[..., Any], *args: Any) -> Any:
    """A batch's write, minding the writer's connection as Django does around a request."""
    close_old_connections()
    drop_closed_connections()  # what ClosedConnectionMiddleware does before a request
    try:
        return function(*args)
    finally:
        close_old_connections()


def _user_id(request: Request) -> str | None:
    """The caller for log lines, once the view has authenticated it (None before or without)."""
    try:
        user = request.user
    except Exception:  # noqa: BLE001 - a bad token is the view's 401, not a logging error
        return None
    return str(getattr(user, "user_id", "") or "") or None


def _unreachable(request: HttpRequest) -> HttpResponse:
    raise AssertionError("the endpoint calls the middleware's hooks, never its chain")


def _meta(scope: dict[str, Any]) -> dict[str, str]:
    """What the request limits read, before the body is: its declared length and query string."""
    meta = {"QUERY_STRING": scope.get("query_string", b"").decode("latin-1")}
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            meta["CONTENT_LENGTH"] = value.decode("latin-1")
    return meta


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None once it grows past ``limit`` (what is left is not read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(send: Send, response: HttpResponseBase) -> None:
    headers = [(name.encode("latin-1"), str(value).encode("latin-1")) for name, value in response.items()]
    for cookie in response.cookies.values():
        headers.append((b"set-cookie", cookie.output(header="").strip().encode("latin-1")))
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": getattr(response, "content", b"")})
