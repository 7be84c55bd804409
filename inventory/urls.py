"""HTTP routes of the inventory context (docs/api.md "Endpoints"; exact paths, no trailing slash).

The three operation paths come first: ``reserve``, ``confirm`` and ``release`` are not product ids.
"""

from django.urls import path

from .api import ConfirmApi, ProductDetailApi, ProductListApi, ReleaseApi, ReserveApi

urlpatterns = [
    path("inventory", ProductListApi.as_view(), name="inventory-products"),
    path("inventory/reserve", ReserveApi.as_view(), name="inventory-reserve"),
    path("inventory/confirm", ConfirmApi.as_view(), name="inventory-confirm"),
    path("inventory/release", ReleaseApi.as_view(), name="inventory-release"),
    path("inventory/<str:product_id>", ProductDetailApi.as_view(), name="inventory-product"),
]
