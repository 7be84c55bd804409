"""The one-shot steps of ``make stack`` write JSON lines too, as every process after them.

``make stack`` first runs deploy/ensure_services.sh, deploy/ensure_database.py, ``manage.py
migrate``, ``declare_topology`` and ``seed_demo`` (compose's migrate service and the Kubernetes
Job run the manage.py ones); their output is part of what an operator reads. Here they run as
the Makefile runs them, on a database and a vhost that do not exist yet, and every line of
their stdout and stderr must parse as one JSON object with the common fields.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from tests.fixtures.rabbitmq import add_vhost, delete_vhost
from tests.fixtures.stack import ROOT, subprocess_env
from tests.observability.conftest import json_lines

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

# The steps of the Makefile's stack recipe before the supervisor, as it writes them.
STEPS = [
    ["bash", "deploy/ensure_services.sh"],
    ["$(PY)", "deploy/ensure_database.py"],
    ["$(PY)", "manage.py", "migrate", "--noinput"],
    ["$(PY)", "manage.py", "declare_topology"],
    ["$(PY)", "manage.py", "seed_demo"],
]


def recipe(target: str = "stack") -> str:
    makefile = (ROOT / "Makefile").read_text()
    return makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]


@pytest.fixture
def new_target() -> Iterator[dict[str, str]]:
    """A database name and a vhost that do not exist yet (removed afterwards)."""
    db = connection.settings_dict
    name = f"{db['NAME']}_setup"
    admin = psycopg.conninfo.make_conninfo(
        host=db.get("HOST") or "127.0.0.1",
        port=str(db.get("PORT") or 5432),
        user=db.get("USER") or "",
        dbname="postgres",
    )

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    drop()
    broker = urlsplit(settings.BROKER_URL)
    vhost = f"{unquote(broker.path.lstrip('/')) or 'oms'}_setup"
    delete_vhost(vhost)
    add_vhost(vhost, broker.username or "guest")
    auth = quote(db.get("USER") or "", safe="")
    server = f"{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
    try:
        yield {
            "DATABASE_URL": f"postgres://{auth}@{server}/{name}",
            "BROKER_URL": broker._replace(path="/" + quote(vhost, safe="")).geturl(),
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
        }
    finally:
        drop()
        delete_vhost(vhost)


def run_step(argv: list[str], env: dict[str, str]) -> tuple[int, list[str]]:
    program = [sys.executable if word == "$(PY)" else word for word in argv]
    done = subprocess.run(program, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return done.returncode, (done.stdout + done.stderr).splitlines()


def test_the_steps_are_the_makefiles():
    for step in STEPS:
        assert " ".join(step) in recipe("stack"), step


@pytest.mark.parametrize("target", ["stack", "run"])
def test_make_echoes_none_of_the_run_modes_recipes(target):
    # the output of make stack and make run is the processes' JSON lines, nothing of make's
    lines = recipe(target).replace("\\\n", " ").splitlines()[1:]
    commands = [line for line in lines if line.startswith("\t")]
    assert len(commands) >= 3 and all(line.startswith("\t@") for line in commands), commands


def test_every_line_of_the_one_shot_steps_is_json(new_target):
    env = subprocess_env(**new_target)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    output: dict[str, list[dict[str, Any]]] = {}
    for step in STEPS:
        code, lines = run_step(step, env)
        assert code == 0, "\n".join(lines[-20:])
        assert lines, f"{step} wrote nothing"
        output[step[-1] if step[-1] != "--noinput" else "migrate"] = json_lines(lines)

    assert output["deploy/ensure_services.sh"][-1]["event"] == "PostgreSQL, RabbitMQ and Redis answer"
    [created] = output["deploy/ensure_database.py"]
    assert created["event"].endswith("created") and created["process"] == "ensure_database"
    migrate = output["migrate"]
    assert {line["process"] for line in migrate} == {"migrate"}
    assert {line["logger"] for line in migrate} == {"manage.migrate"}
    # a migration's line is whole: "Applying x..." and its " OK" are written in two pieces
    assert "Applying orders.0001_initial... OK" in [line["event"] for line in migrate]
    [declared] = output["declare_topology"]
    assert declared["event"].startswith("declared ") and declared["level"] == "INFO"
    assert [line["event"] for line in output["seed_demo"]] == [
        "users: 3 created, 0 updated, 0 unchanged",
        "products: 20 created, 0 updated, 0 unchanged",
    ]

    # and a step that fails says so in a JSON line too, with a non-zero exit
    code, lines = run_step(["$(PY)", "manage.py", "migrate", "no_such_app"], env)
    assert code == 1
    [error] = json_lines(lines)
    assert error["level"] == "ERROR" and "no_such_app" in error["event"]
