"""Auth endpoints (docs/api.md "Endpoints"): obtain a token pair, rotate it, log out.

Refresh tokens rotate and the used one is blacklisted under a row lock, so two concurrent
refreshes of the same token cannot both succeed. A refreshed pair carries the user's *current*
claims (role, permissions, customer id), read again from the database, and stays in the login
session (``sid``) of the pair it replaces. Logging out blacklists the refresh token and denies,
until they expire, the access tokens of its session and the one presented with the request
(orders/sessions.py).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken, TokenError
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken
from rest_framework_simplejwt.utils import datetime_from_epoch
from rest_framework_simplejwt.views import TokenObtainPairView

from config.fields import StrictCharField
from config.problems import BEARER_CHALLENGE, ProblemSerializer
from config.throttling import AnonRateThrottle, LoginRateThrottle

from . import lockout, sessions
from .auth import tokens_for
from .models import User

TOKEN_MAX_LENGTH = 4096


# --- Shapes ----------------------------------------------------------------------------------


class CredentialsSerializer(TokenObtainPairSerializer):
    """``{"username", "password"}`` → a token pair carrying the claims of docs/security.md "Tokens"."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Bounded so an oversized password cannot make hashing a denial of service.
        self.fields[self.username_field] = StrictCharField(write_only=True, max_length=150)
        self.fields["password"] = StrictCharField(
            write_only=True, max_length=1024, trim_whitespace=False, style={"input_type": "password"}
        )

    @classmethod
    def get_token(cls, user: User) -> RefreshToken:  # type: ignore[override]
        return tokens_for(user)


class RefreshInputSerializer(serializers.Serializer):
    refresh = StrictCharField(max_length=TOKEN_MAX_LENGTH)


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class CredentialsDocSerializer(serializers.Serializer):
    """The request body of POST /api/auth/token, as documented."""

    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=1024, trim_whitespace=False)


def _problem(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ProblemSerializer, description=description)


# --- Token operations ------------------------------------------------------------------------


def rotate_refresh_token(*, raw: str) -> RefreshToken:
    """Blacklist the refresh token ``raw`` and return a new pair for its (still active) user."""
    old = _verified_refresh(raw)
    user = _active_user_of(old)
    with transaction.atomic():
        _revoke(old)
        return tokens_for(user, session=old.get(sessions.SESSION_CLAIM))


def revoke_refresh_token(*, raw: str) -> None:
    """Blacklist the refresh token ``raw`` (logout) and deny the access tokens of its session."""
    token = _verified_refresh(raw)
    with transaction.atomic():
        _revoke(token)
    session = token.get(sessions.SESSION_CLAIM)
    if session:
        sessions.revoke_session(str(session))


def revoke_presented_access_token(request: Request) -> None:
    """Deny the access token of the request's ``Authorization: Bearer`` header, if it is valid.

    Logout takes no token, so a missing, malformed or expired one is simply not revoked.
    """
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    if scheme != "Bearer" or not raw or len(raw) > TOKEN_MAX_LENGTH:
        return
    try:
        token = AccessToken(raw.strip())  # type: ignore[arg-type]
    except TokenError:
        return
    sessions.revoke_access(token)


def _verified_refresh(raw: str) -> RefreshToken:
    try:
        # Checks signature, expiry, type and blacklist (the stubs miss that it takes a str).
        return RefreshToken(raw)  # type: ignore[arg-type]
    except TokenError as exc:
        raise InvalidToken(str(exc)) from exc


def _active_user_of(token: RefreshToken) -> User:
    username = token.get(jwt_settings.USER_ID_CLAIM)
    user = User.objects.filter(username=username, is_active=True).first() if username else None
    if user is None:
        raise AuthenticationFailed("No active account found for the given token.", "no_active_account")
    return user


def _revoke(token: RefreshToken) -> None:
    """Blacklist ``token`` under a lock on its outstanding row: of two racing uses, one loses."""
    jti = token[jwt_settings.JTI_CLAIM]
    OutstandingToken.objects.get_or_create(
        jti=jti,
        defaults={
            "user": User.objects.filter(username=token.get(jwt_settings.USER_ID_CLAIM)).first(),
            "created_at": timezone.now(),
            "token": str(token),
            "expires_at": datetime_from_epoch(token["exp"]),
        },
    )
    outstanding = OutstandingToken.objects.select_for_update().get(jti=jti)
    _, created = BlacklistedToken.objects.get_or_create(token=outstanding)
    if not created:
        raise InvalidToken("Token is blacklisted")


# --- Views -----------------------------------------------------------------------------------


class PublicAuthView(APIView):
    """Auth endpoints take no access token; failures still answer 401 with a Bearer challenge."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request: Request) -> str:
        return BEARER_CHALLENGE


class TokenObtainView(TokenObtainPairView):
    """POST /api/auth/token"""

    serializer_class = CredentialsSerializer
    # Per address and per account tried: neither spreading guesses over accounts nor over
    # addresses multiplies the budget.
    throttle_classes = [AnonRateThrottle, LoginRateThrottle]

    @extend_schema(
        operation_id="auth_token_obtain",
        tags=["auth"],
        summary="Obtain an access and a refresh token",
        request=CredentialsDocSerializer,
        responses={
            200: TokenPairSerializer,
            400: _problem("Missing or malformed fields"),
            401: _problem("Wrong username or password"),
            429: _problem(
                "Too many attempts (throttled), or logging in is locked for this account or address "
                "after repeated failures (type urn:oms:problem:login_locked); see Retry-After"
            ),
        },
        auth=[],
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return super().post(request, *args, **kwargs)
        except exceptions.AuthenticationFailed:
            # django-axes marks the request it refused, or whose failure reached the limit.
            if getattr(request, "axes_locked_out", False):
                raise lockout.locked_out(request) from None
            raise


class TokenRefreshView(PublicAuthView):
    """POST /api/auth/token/refresh"""

    @extend_schema(
        operation_id="auth_token_refresh",
        tags=["auth"],
        summary="Rotate a refresh token (the old one is blacklisted)",
        request=RefreshInputSerializer,
        responses={
            200: TokenPairSerializer,
            400: _problem("Missing or malformed fields"),
            401: _problem("Invalid, expired or blacklisted refresh token"),
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        given = RefreshInputSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        pair = rotate_refresh_token(raw=given.validated_data["refresh"])
        return Response({"access": str(pair.access_token), "refresh": str(pair)})


class LogoutView(PublicAuthView):
    """POST /api/auth/logout"""

    @extend_schema(
        operation_id="auth_logout",
        tags=["auth"],
        summary="Log out: blacklist a refresh token and revoke the session's access tokens",
        description=(
            "Blacklists the refresh token and denies, until they expire, the access tokens of its "
            "login session (rotations included) and the access token sent as "
            "`Authorization: Bearer`, if any. No access token is required."
        ),
        request=RefreshInputSerializer,
        responses={
            205: OpenApiResponse(
                description="Logged out; the refresh token and the session's access tokens no longer work"
            ),
            400: _problem("Missing or malformed fields"),
            401: _problem("Invalid, expired or already blacklisted refresh token"),
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        given = RefreshInputSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        revoke_presented_access_token(request)
        revoke_refresh_token(raw=given.validated_data["refresh"])
        return Response(status=status.HTTP_205_RESET_CONTENT)
