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


# --- The description tells the truth (issue 12) and reads well (issue 13) ----------------------

PROBLEM = "application/problem+json"
CONTEXT_TAGS = {"auth", "orders", "queries", "inventory", "payments", "health", "admin"}
ADMIN_ONLY = {
    ("put", "/api/orders/{order_id}/status"),
    ("get", "/api/orders/analytics"),
    ("put", "/api/inventory/{product_id}"),
    ("post", "/api/inventory/reserve"),
    ("post", "/api/inventory/confirm"),
    ("post", "/api/inventory/release"),
    ("post", "/api/payments/process"),
    ("post", "/api/payments/refund"),
}
PUBLIC = {"/api/auth/token", "/api/auth/token/refresh", "/api/auth/logout", "/health/live", "/health/ready"}


@pytest.fixture
def schema(api_client) -> dict:
    response = api_client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def _operations(schema: dict):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            yield method, path, operation


def _component(schema: dict, reference: str) -> dict:
    return schema["components"]["schemas"][reference.rsplit("/", 1)[-1]]


def test_every_error_is_documented_as_the_problem_document_it_is_sent_as(schema):
    for method, path, operation in _operations(schema):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            if (path, status) == ("/health/ready", "503"):  # the readiness report, not a problem
                assert list(response["content"]) == ["application/json"]
                continue
            assert list(response["content"]) == [PROBLEM], (method, path, status)
            assert response["content"][PROBLEM]["schema"]["$ref"].endswith("/Problem"), (method, path)
            assert response["description"], (method, path, status)


def test_every_operation_declares_the_statuses_every_request_can_meet(schema):
    for method, path, operation in _operations(schema):
        declared = set(operation["responses"])
        # a NUL in the query string, a bad Content-Length; a declared body over the limit
        assert {"400", "413"} <= declared, (method, path)
        if "requestBody" in operation:
            assert "415" in declared, (method, path)
        if path not in PUBLIC:
            assert {"401", "406", "429"} <= declared, (method, path)
            challenge = operation["responses"]["401"]["headers"]["WWW-Authenticate"]
            assert challenge["required"] is True
        if (method, path) in ADMIN_ONLY:
            assert "403" in declared, (method, path)


def test_inventory_and_payments_declare_their_refusals(schema):
    paths = schema["paths"]
    assert {"401", "403", "404", "409"} <= set(paths["/api/inventory/confirm"]["post"]["responses"])
    assert {"401", "403", "409", "503"} <= set(paths["/api/inventory/reserve"]["post"]["responses"])
    assert {"401", "404"} <= set(paths["/api/inventory/{product_id}"]["get"]["responses"])
    assert {"401", "403", "404", "409"} <= set(paths["/api/payments/process"]["post"]["responses"])
    assert {"401", "403", "404", "409", "503"} <= set(paths["/api/payments/refund"]["post"]["responses"])
    assert {"401", "404"} <= set(paths["/api/payments/{order_id}"]["get"]["responses"])
    assert {"400", "401", "404"} <= set(paths["/api/inventory"]["get"]["responses"])


def test_placing_an_order_documents_location_and_its_idempotency_answers(schema):
    place = schema["paths"]["/api/orders"]["post"]
    location = place["responses"]["202"]["headers"]["Location"]
    assert location["required"] is True
    assert {"409", "422"} <= set(place["responses"])
    assert "Retry-After" in place["responses"]["409"]["headers"]
    assert "Retry-After" in place["responses"]["429"]["headers"]
    assert [p["name"] for p in place["parameters"]] == ["Idempotency-Key"]


def test_status_fields_are_enums_of_every_value_they_take(schema):
    from inventory.domain import ReservationState
    from orders.domain import FAILURE_REASONS, STATUSES
    from payments.domain import PaymentStatus
    from sagas.public import SAGA_STATES, SAGA_STEPS

    enums = {
        name: set(value["enum"]) - {None}
        for name, value in schema["components"]["schemas"].items()
        if "enum" in value
    }
    assert enums["OrderStatusEnum"] == set(STATUSES)
    assert enums["FailureReasonEnum"] == set(FAILURE_REASONS)
    assert enums["SagaStateEnum"] == set(SAGA_STATES)
    assert enums["SagaStepEnum"] == set(SAGA_STEPS)
    assert enums["PaymentStatusEnum"] == {status.value for status in PaymentStatus}
    assert enums["ReservationStateEnum"] == {state.value for state in ReservationState}
    schemas = schema["components"]["schemas"]
    for component, member in (
        ("OrderOutput", "status"),
        ("OrderAccepted", "status"),
        ("OrderSummaryOutput", "status"),
        ("PaymentOutput", "status"),
        ("ReservationOutput", "state"),
        ("SagaOutput", "state"),
    ):
        assert schemas[component]["properties"][member]["$ref"].endswith("Enum"), (component, member)
    reason = schemas["OrderOutput"]["properties"]["failure_reason"]
    assert {ref["$ref"].rsplit("/", 1)[-1] for ref in reason["oneOf"]} == {"FailureReasonEnum", "NullEnum"}


def test_each_parameter_is_declared_once(schema):
    for method, path, operation in _operations(schema):
        names = [(p["name"], p["in"]) for p in operation.get("parameters", [])]
        assert len(names) == len(set(names)), (method, path, names)
    customer = schema["paths"]["/api/orders/customer/{customer_id}"]["get"]["parameters"]
    assert [p["in"] for p in customer if p["name"] == "customer_id"] == ["path"]


def test_operations_have_summaries_and_their_context_as_tag(schema):
    assert {tag["name"] for tag in schema["tags"]} == CONTEXT_TAGS
    for method, path, operation in _operations(schema):
        assert operation.get("summary"), (method, path)
        assert len(operation["tags"]) == 1 and operation["tags"][0] in CONTEXT_TAGS, (method, path)
        if path.startswith("/api/admin/"):
            assert operation["tags"] == ["admin"], (method, path)
    paths = schema["paths"]
    assert paths["/api/orders"]["post"]["tags"] == ["orders"]  # the command side's placement
    assert paths["/api/orders"]["get"]["tags"] == ["queries"]  # the query side's list
    assert "one path for two contexts" not in paths["/api/orders"]["post"].get("description", "")


def test_request_bodies_say_what_they_refuse(schema):
    schemas = schema["components"]["schemas"]
    # the payments operations refuse unknown members; the others ignore them
    assert schemas["RefundPaymentRequestRequest"]["additionalProperties"] is False
    assert "additionalProperties" not in schemas["PlaceOrderInputRequest"]
    items = schemas["PlaceOrderInputRequest"]["properties"]["items"]
    assert (items["minItems"], items["maxItems"]) == (1, 100)
    assert schemas["PaymentInputRequest"]["properties"]["token"]["pattern"]  # no NUL, not blank
    amount = schemas["RefundPaymentRequestRequest"]["properties"]["amount"]
    assert re.fullmatch(amount["pattern"], "0.01") and not re.fullmatch(amount["pattern"], "0.00")
