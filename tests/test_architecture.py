"""The modular monolith's rules, checked on the source (docs/architecture.md "Contexts").

Contexts meet only through ``public.py`` or messages, the event store knows no context, and
each ``domain.py`` is pure Python. import-linter enforces the contracts in pyproject.toml;
the domain rule is also checked here directly with ``ast``, so it holds even for a domain
module import-linter would not see (one outside the root packages, say).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTEXTS = ("orders", "inventory", "payments", "sagas", "queries")

# Frameworks and infrastructure a domain module must not depend on.
FORBIDDEN_IN_DOMAIN = ("django", "rest_framework", "rest_framework_simplejwt", "celery", "kombu", "psycopg")


def domain_modules() -> list[Path]:
    """Every context's ``domain.py`` (or the modules of a ``domain/`` package) and ``events.py``."""
    return sorted([*ROOT.glob("*/domain.py"), *ROOT.glob("*/domain/*.py"), *ROOT.glob("*/events.py")])


def imported_modules(path: Path, *, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file; relative ones resolved."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.append((node.lineno, base))
    return names


def domain_violations(path: Path, *, root: Path = ROOT) -> list[str]:
    """The imports of a domain module that break its purity."""
    where = path.relative_to(root)
    own_context = where.parts[0]
    problems = []
    for line, name in imported_modules(path, root=root):
        top = name.split(".")[0]
        if top in FORBIDDEN_IN_DOMAIN:
            problems.append(f"{where}:{line} imports {name}")
        elif top in CONTEXTS and top != own_context:
            problems.append(f"{where}:{line} imports another context: {name}")
        elif top == own_context and name.split(".")[1:2] == ["models"]:
            problems.append(f"{where}:{line} imports the ORM models: {name}")
    return problems


def test_import_linter_contracts_are_kept() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Domain modules are pure Python" in result.stdout
    assert " broken" in result.stdout and "0 broken" in result.stdout


@pytest.mark.parametrize("path", domain_modules(), ids=lambda path: str(path.relative_to(ROOT)))
def test_domain_module_imports_no_framework_and_no_other_context(path: Path) -> None:
    assert domain_violations(path) == []


def test_the_purity_check_catches_a_django_import(tmp_path: Path) -> None:
    # The check above must be able to fail: a domain module that imports Django is caught.
    fake_root = tmp_path / "orders"
    fake_root.mkdir()
    (fake_root / "domain.py").write_text(
        "from django.db import models\nfrom ..inventory import handlers\nfrom .models import Order\n"
    )
    problems = domain_violations(fake_root / "domain.py", root=tmp_path)
    assert [problem.split(" ", 1)[1] for problem in problems] == [
        "imports django.db",
        "imports another context: inventory",
        "imports the ORM models: orders.models",
    ]


def test_every_context_has_a_domain_module() -> None:
    # queries/ is a read side: projections, no aggregate, so no domain module is expected there.
    missing = [name for name in CONTEXTS if name != "queries" and not (ROOT / name / "domain.py").exists()]
    assert missing == []


# --- The boundaries of issue 14: no cycles, config as the composition root --------------------

BOUNDARY_CONTRACTS = (
    "Contexts talk to each other only through public.py (or messages)",
    "No import cycles between contexts: orders, then sagas, then the rest",
    "The read side imports neither orders nor sagas",
    "The event store knows no context",
    "config's platform modules know neither the contexts nor the event store",
    "config is the composition root: no context imports the modules that compose them",
    "The SQL of a context lives in its recorder",
)


def test_the_boundary_contracts_are_declared() -> None:
    # Dropping a contract from pyproject.toml would make the lint pass silently: name them here.
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    names = {contract["name"] for contract in declared}
    assert [name for name in BOUNDARY_CONTRACTS if name not in names] == []


def test_the_saga_reaches_orders_only_through_the_port_the_composition_root_connects() -> None:
    from orders import public as orders_public
    from sagas import ports

    assert ports.orders() is orders_public
    assert [
        line for line, name in imported_modules(ROOT / "sagas" / "handlers.py") if name.startswith("orders")
    ] == []


def test_the_saga_refuses_to_run_without_an_order_port() -> None:
    from sagas import ports

    connected = ports.orders()
    ports.connect_orders(None)  # type: ignore[arg-type]
    try:
        with pytest.raises(RuntimeError, match="no order port"):
            ports.orders()
    finally:
        ports.connect_orders(connected)


@pytest.mark.parametrize(
    "module", ["config/metrics_state.py", "config/metrics_view.py", "config/console/compose.py"]
)
def test_the_scrape_time_composition_knows_no_context_table_nor_redis_layout(module: str) -> None:
    # The gauges come from each context's public.py: config names them, the contexts read them.
    from django.apps import apps

    source = (ROOT / module).read_text()
    tables = {
        model._meta.db_table
        for label in ("eventstore", "orders", "inventory", "payments", "sagas", "queries")
        for model in apps.get_app_config(label).get_models()
    }
    assert tables, "the context apps have models"
    assert sorted(table for table in tables if table in source) == []
    assert "oms:breaker" not in source and "open_until" not in source
    assert context_imports_besides_public(ROOT / module) == []


def context_imports_besides_public(path: Path) -> list[str]:
    """The modules of a context that a file imports, other than the context's ``public``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found += [
                node.module if "." in node.module else f"{node.module}.{alias.name}" for alias in node.names
            ]
    return sorted(
        {name for name in found if name.split(".")[0] in CONTEXTS and name.split(".")[1:2] != ["public"]}
    )


def test_the_public_only_check_catches_a_private_module(tmp_path: Path) -> None:
    module = tmp_path / "composer.py"
    module.write_text(
        "from payments import public\nfrom payments.gateway import default_gateway\nimport sagas.recorder\n"
    )
    assert context_imports_besides_public(module) == ["payments.gateway", "sagas.recorder"]


# --- The SQL of a context lives in its recorder (lint/contracts.py) ---------------------------


def test_the_recorder_contract_names_every_module_that_takes_a_connection(tmp_path, monkeypatch) -> None:
    # The custom contract must be able to fail: a context module holding a connection is named,
    # however it takes it; the recorder, ``transaction`` and the ORM are left alone.
    import grimp

    from lint.contracts import ForbiddenNamesContract, NameImport

    context = tmp_path / "shopctx"
    (context / "migrations").mkdir(parents=True)
    for name in ("__init__.py", "migrations/__init__.py"):
        (context / name).write_text("")
    (context / "recorder.py").write_text("from django.db import connection\n")
    (context / "migrations" / "0001_initial.py").write_text("from django.db import connection\n")
    (context / "handlers.py").write_text("from django.db import models, transaction\n")
    (context / "api.py").write_text("from django.db import (\n    transaction,\n    connection,\n)\n")
    (context / "tasks.py").write_text("def run():\n    from django.db import connections\n")
    (context / "views.py").write_text("from django import db\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("shopctx", include_external_packages=True, cache_dir=None)
    contract = ForbiddenNamesContract(
        name="recorders",
        session_options={},
        contract_options={
            "source_modules": ["shopctx"],
            "forbidden_names": ["django.db.connection", "django.db.connections"],
            "allowed_modules": ["*.recorder", "*.migrations.*"],
        },
    )
    check = contract.check(graph, verbose=False)
    assert not check.kept
    assert sorted(check.metadata["imports"], key=lambda found: found.importer) == [
        NameImport("shopctx.api", "django.db.connection", 1),
        NameImport("shopctx.tasks", "django.db.connections", 2),
        NameImport("shopctx.views", "django.db", 1),
    ]
