"""HTTP routes of the inventory context."""

urlpatterns: list = []
