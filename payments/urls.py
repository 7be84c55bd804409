"""HTTP routes of the payments context (exact paths, no trailing slash)."""

from django.urls import path

from .api import PaymentDetailApi, ProcessPaymentApi, RefundPaymentApi

urlpatterns = [
    path("payments/process", ProcessPaymentApi.as_view(), name="payments-process"),
    path("payments/refund", RefundPaymentApi.as_view(), name="payments-refund"),
    path("payments/<str:order_id>", PaymentDetailApi.as_view(), name="payments-detail"),
]
