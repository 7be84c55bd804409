"""HTTP routes of the payments context."""

urlpatterns: list = []
