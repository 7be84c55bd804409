"""Routes of the auth endpoints, included at ``api/auth/`` (exact paths, no trailing slash)."""

from django.urls import path

from . import auth_api

urlpatterns = [
    path("token", auth_api.TokenObtainView.as_view(), name="auth-token"),
    path("token/refresh", auth_api.TokenRefreshView.as_view(), name="auth-token-refresh"),
    path("logout", auth_api.LogoutView.as_view(), name="auth-logout"),
]
