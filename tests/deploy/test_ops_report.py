"""deploy/ops_report.py (``make ops-report``): how it counts JSON lines and reads a journey.

The whole report runs a stack, a Prometheus server and every validator for minutes; its parts
that decide the figures are checked here on lines whose answer is known.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from types import ModuleType

from tests.deploy.tools import ROOT


def ops_report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ops_report", ROOT / "deploy" / "ops_report.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["ops_report"] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_only_a_json_object_per_line_counts_and_every_other_line_is_named():
    lines = [
        json.dumps({"timestamp": "2026-01-01T00:00:00.000Z", "process": "web", "event": "a"}),
        json.dumps({"timestamp": "2026-01-01T00:00:01.000Z", "process": "consumers", "event": "b"}),
        "",  # blank lines are no lines
        "Operations to perform:",
        '["a JSON array is not a log line"]',
        '{"cut": "in the midd',
    ]
    parsed, total, per_process, plain = ops_report().json_share(lines)
    assert (parsed, total) == (2, 5)
    assert per_process == {"web": 1, "consumers": 1}
    assert plain == lines[3:]


def test_a_journey_row_keeps_the_state_and_the_reason_and_escapes_table_bars():
    rows = ops_report().journey_table(
        [
            {
                "timestamp": "t1",
                "process": "consumers",
                "level": "INFO",
                "logger": "sagas.handlers",
                "event": "saga transitioned",
                "to_state": "COMPENSATING",
                "reason": "compensating: PAYMENT_DECLINED",
            },
            {
                "timestamp": "t2",
                "process": "web",
                "level": "INFO",
                "logger": "uvicorn.access",
                "event": "a | b",
            },
        ]
    )
    assert rows[2] == (
        "| t1 | consumers | INFO | sagas.handlers | saga transitioned | COMPENSATING "
        "| compensating: PAYMENT_DECLINED |"
    )
    assert "a \\| b" in rows[3]
