"""The OpenAPI 3 schema and the Swagger UI, both public and served from local files."""

import re

import pytest
import yaml

pytestmark = pytest.mark.django_db


def test_schema_is_openapi_3_json_with_the_auth_operations(api_client):
    response = api_client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    token = schema["paths"]["/api/auth/token"]["post"]
    assert token.get("security") in (None, [], [{}])  # public: no Bearer needed
    assert set(token["responses"]) >= {"200", "400", "401"}
    body_ref = token["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = schema["components"]["schemas"][body_ref.rsplit("/", 1)[-1]]
    assert set(body["properties"]) == {"username", "password"}
    assert "/api/auth/token/refresh" in schema["paths"]
    assert "205" in schema["paths"]["/api/auth/logout"]["post"]["responses"]
    assert "/health/ready" in schema["paths"]
    schemes = schema["components"]["securitySchemes"]
    assert any(s.get("scheme") == "bearer" and s.get("bearerFormat") == "JWT" for s in schemes.values())


def test_schema_default_is_yaml(api_client):
    response = api_client.get("/api/schema/")
    assert response.status_code == 200
    assert yaml.safe_load(response.content)["openapi"].startswith("3.")


def test_schema_is_public_even_with_a_bad_token(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Bearer garbage")
    assert api_client.get("/api/schema/").status_code == 200
    assert api_client.get("/api/docs/").status_code == 200


def test_docs_are_swagger_ui_from_local_static_files(api_client):
    response = api_client.get("/api/docs/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    scripts = re.findall(r'src="([^"]+\.js)"', html)
    assert scripts, html
    assert not any(src.startswith(("http://", "https://", "//")) for src in scripts)
    assert all("/static/drf_spectacular_sidecar/" in src for src in scripts)
    # the assets are really served by this process (WhiteNoise), not a CDN
    for src in scripts:
        assert api_client.get(src).status_code == 200, src
