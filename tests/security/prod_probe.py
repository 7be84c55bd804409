"""Run under config.settings.production: a few requests through the full middleware stack.

Prints one JSON line: status codes and headers the production settings must produce.
"""

import json

import django

django.setup()

from django.test import Client  # noqa: E402

client = Client(HTTP_HOST="oms.example.com")
live_http = client.get("/health/live")
api_http = client.get("/api/inventory")
api_https = client.get("/api/inventory", secure=True)
ui_https = client.get("/", secure=True)
print(
    "PROBE-RESULT "
    + json.dumps(
        {
            "live_http": live_http.status_code,
            "api_http": api_http.status_code,
            "api_http_location": api_http.get("Location", ""),
            "api_https": api_https.status_code,
            "hsts": api_https.get("Strict-Transport-Security", ""),
            "nosniff": api_https.get("X-Content-Type-Options", ""),
            "frame": ui_https.get("X-Frame-Options", ""),
            "csp": ui_https.get("Content-Security-Policy", ""),
        }
    )
)
