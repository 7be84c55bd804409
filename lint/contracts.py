"""An import-linter contract for names, where the built-in ones see only modules.

import-linter counts an external package as one module (``django``), so no built-in contract
can say "only the recorders import ``django.db.connection``": ``from django.db import
transaction`` and ``from django.db import connection`` are the same import to it. This
contract reads the import statements of the modules that import the package (those inside
functions too) and names each one that takes a forbidden name, or the module that holds it,
outside the modules allowed to.

The project uses it to keep each context's SQL in one place, its recorder (pyproject.toml,
"The SQL of a context lives in its recorder"): whoever holds ``connection`` or
``connections`` can run statements; everyone else goes through a recorder, and manages its
thread's connections through ``config.connections``.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


@dataclass(frozen=True)
class NameImport:
    """One forbidden name taken by one module, at one line."""

    importer: str
    name: str
    line: int


class ForbiddenNamesContract(Contract):
    """Modules of ``source_modules`` must not import the names of ``forbidden_names``.

    Options:
        - source_modules: packages whose modules are checked (each with all its descendants).
        - forbidden_names: fully qualified names, e.g. ``django.db.connection``.
        - allowed_modules: patterns (``fnmatch``) of the modules that may import them.
    """

    type_name = "forbidden_names"

    source_modules = fields.ListField(subfield=fields.StringField())
    forbidden_names = fields.ListField(subfield=fields.StringField())
    allowed_modules = fields.ListField(subfield=fields.StringField(), required=False)

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        forbidden = set(self._option("forbidden_names"))
        allowed = self._option("allowed_modules")
        packages = {name.rsplit(".", 1)[0].split(".")[0] for name in forbidden}
        found: list[NameImport] = []
        for source in self._option("source_modules"):
            modules = {source} | graph.find_descendants(source)
            for module in sorted(modules):
                if any(fnmatch.fnmatchcase(module, pattern) for pattern in allowed):
                    continue
                if not any(graph.direct_import_exists(importer=module, imported=p) for p in packages):
                    continue
                found += names_imported(module, forbidden)
        output.verbose_print(verbose, f"{len(found)} forbidden name imports found.")
        return ContractCheck(kept=not found, metadata={"imports": found})

    def _option(self, name: str) -> list[str]:
        """An option's values, as the contract's fields were filled from the configuration."""
        return [str(value) for value in vars(self).get(name) or []]

    def render_broken_contract(self, check: ContractCheck) -> None:
        for name_import in check.metadata["imports"]:
            output.print_error(
                f"{name_import.importer} imports {name_import.name} (l.{name_import.line})", bold=False
            )
            output.new_line()


def names_imported(module: str, forbidden: set[str]) -> list[NameImport]:
    """The forbidden names, or their modules, that a module's import statements take (anywhere in it)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return []
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"), filename=spec.origin)
    parents = {name.rsplit(".", 1)[0] for name in forbidden}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            taken = [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            taken = [alias.name for alias in node.names]
        else:
            continue
        # A name itself, or the module that holds it (``from django import db``, ``import django.db``).
        found += [NameImport(module, name, node.lineno) for name in taken if {name} & (forbidden | parents)]
    return found
