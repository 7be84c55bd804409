"""HTTP routes of the orders context (command side); no trailing slashes, ``order_id`` is a UUID.

``/api/orders`` (POST here, GET on the query side) is composed in config/urls.py.
"""

from django.urls import path

from . import api

urlpatterns = [
    path("orders/<uuid:order_id>", api.OrderDetailView.as_view(), name="orders-detail"),
    path("orders/<uuid:order_id>/status", api.OrderStatusView.as_view(), name="orders-status"),
    path("orders/<uuid:order_id>/timeline", api.OrderTimelineView.as_view(), name="orders-timeline"),
]
