"""HTTP routes of the orders context."""

urlpatterns: list = []
