"""HTTP routes of the orders context (command side); no trailing slashes, ``order_id`` is a UUID."""

from django.urls import path

from . import api

urlpatterns = [
    path("orders", api.OrderPlaceView.as_view(), name="orders-place"),
    path("orders/<uuid:order_id>", api.OrderDetailView.as_view(), name="orders-detail"),
    path("orders/<uuid:order_id>/status", api.OrderStatusView.as_view(), name="orders-status"),
]
