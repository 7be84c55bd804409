"""A URLconf for the problem+json tests: the real routes plus a few views that fail on purpose."""

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.permissions import IsAdmin
from config.problems import Conflict, problem_response
from config.urls import handler400, handler403, handler404, handler500
from config.urls import urlpatterns as real_urlpatterns
from eventstore.store import ConcurrencyError


class LineSerializer(serializers.Serializer):
    product_id = serializers.CharField(max_length=64)
    quantity = serializers.IntegerField(min_value=1, max_value=1000)


class OrderInputSerializer(serializers.Serializer):
    items = LineSerializer(many=True)
    note = serializers.CharField(required=False)

    def validate(self, attrs: dict) -> dict:
        if attrs.get("note") == "reject":
            raise serializers.ValidationError("The note says reject.")
        return attrs


class AdminOnlyView(APIView):
    permission_classes = [IsAdmin]

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


class ValidatingView(APIView):
    def post(self, request: Request) -> Response:
        OrderInputSerializer(data=request.data).is_valid(raise_exception=True)
        return Response({"ok": True})


class ConflictView(APIView):
    def post(self, request: Request) -> Response:
        raise Conflict("Still running.", retry_after=3, order_id="o-1")


class ProblemResponseView(APIView):
    def get(self, request: Request) -> Response:
        return problem_response(409, "Busy", "Try later.", headers={"Retry-After": "2"}, hint="wait")


class BrokenView(APIView):
    def get(self, request: Request) -> Response:
        raise RuntimeError("SELECT secret FROM internals")


class MissingView(APIView):
    def get(self, request: Request) -> Response:
        raise Http404("No Order matches the given query.")


class StaleVersionView(APIView):
    def post(self, request: Request) -> Response:
        raise ConcurrencyError("order-1", 3)


class ModelValidationView(APIView):
    def post(self, request: Request) -> Response:
        raise DjangoValidationError({"price": ["Ensure this value is at least 0."]})


def django_problem(request: HttpRequest) -> HttpResponse:
    return problem_response(503, detail="Down for maintenance.", retry_after_seconds=30)


def django_forbidden(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied("internal reason")


def django_broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("SELECT secret FROM internals")


urlpatterns = [
    path("probe/admin-only", AdminOnlyView.as_view()),
    path("probe/validate", ValidatingView.as_view()),
    path("probe/conflict", ConflictView.as_view()),
    path("probe/problem", ProblemResponseView.as_view()),
    path("probe/broken", BrokenView.as_view()),
    path("probe/missing", MissingView.as_view()),
    path("probe/stale", StaleVersionView.as_view()),
    path("probe/model-validation", ModelValidationView.as_view()),
    path("probe/django-problem", django_problem),
    path("probe/django-forbidden", django_forbidden),
    path("probe/django-broken", django_broken),
    *real_urlpatterns,
]

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
