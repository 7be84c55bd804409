"""Production settings (issue 5 §7): check --deploy clean, HTTPS with exempt probes, CSP on the pages."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def production_env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "JWT_SIGNING_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "oms.example.com",
        "PYTHONPATH": str(ROOT),
        **extra,
    }
    return env


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_check_deploy_passes_with_no_warnings():
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stderr


@pytest.mark.parametrize("missing", ["SECRET_KEY", "JWT_SIGNING_KEY", "ALLOWED_HOSTS"])
def test_production_refuses_to_start_without_its_secrets(missing):
    env = production_env()
    del env[missing]
    result = run(["manage.py", "check"], env)
    assert result.returncode != 0
    assert missing in result.stderr


def test_the_jwt_key_comes_from_the_environment():
    env = production_env(JWT_SIGNING_KEY="k" * 64)
    code = "from django.conf import settings; print(settings.SIMPLE_JWT['SIGNING_KEY'] == 'k' * 64)"
    result = run(["-c", f"import django; django.setup(); {code}"], env)
    assert result.stdout.strip() == "True", result.stderr


def test_https_redirect_spares_the_probes_and_headers_are_set():
    result = run([str(Path(__file__).with_name("prod_probe.py"))], production_env())
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("PROBE-RESULT ")]
    found = json.loads(line.removeprefix("PROBE-RESULT "))
    assert found["live_http"] == 200
    assert found["api_http"] == 301
    assert found["api_http_location"].startswith("https://oms.example.com/")
    assert found["api_https"] == 401
    assert "max-age=31536000" in found["hsts"] and "includeSubDomains" in found["hsts"]
    assert found["nosniff"] == "nosniff"
    assert found["frame"] == "DENY"
    assert "default-src 'self'" in found["csp"]


# --- CSP with the test settings (the same policy as production) --------------------------


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


@pytest.mark.django_db
def test_the_web_ui_needs_nothing_inline(api_client):
    response = api_client.get("/")
    csp = policy(response)
    assert csp["script-src"][0] == "'self'" and "'unsafe-inline'" not in csp["script-src"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"]
    html = response.content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script in the web UI"
    assert "<style" not in html and " style=" not in html


@pytest.mark.django_db
def test_swagger_ui_inline_script_and_style_carry_the_nonce(api_client):
    response = api_client.get("/api/docs/")
    assert response.status_code == 200
    csp = policy(response)
    [nonce] = [value for value in csp["script-src"] if value.startswith("'nonce-")]
    nonce = nonce.removeprefix("'nonce-").removesuffix("'")
    html = response.content.decode()
    inline = re.findall(r"<(script|style)(?![^>]*\bsrc=)([^>]*)>", html)
    assert inline, "drf-spectacular's page changed: no inline script or style left"
    assert all(f'nonce="{nonce}"' in attrs for _, attrs in inline), inline
    assert f"'nonce-{nonce}'" in csp["style-src"]
    # a second request gets another nonce
    assert nonce not in api_client.get("/api/docs/")["Content-Security-Policy"]


@pytest.mark.django_db
def test_the_admin_login_page_has_no_inline_script(api_client):
    response = api_client.get("/admin/login/")
    assert response.status_code == 200
    assert "Content-Security-Policy" in response
    assert not re.search(r"<script(?![^>]*\bsrc=)", response.content.decode())
