"""HTTP routes of the queries context. ``GET /api/orders`` itself is composed in config/urls.py
(one path for two contexts); these literal paths never match ``orders/<uuid:order_id>``.
"""

from django.urls import path

from . import api

urlpatterns = [
    path("orders/search", api.OrderSearchView.as_view(), name="orders-search"),
    path("orders/analytics", api.OrderAnalyticsView.as_view(), name="orders-analytics"),
    path("orders/customer/<str:customer_id>", api.CustomerOrderListView.as_view(), name="orders-customer"),
]
