"""Backup and restore of the PostgreSQL database (docs/operations.md "Backup and recovery").

A backup is ``pg_dump --format=custom`` of the whole database: the event store, the outbox and
inbox, the sagas, inventory, payments, the users and the read models, one consistent snapshot
(pg_dump reads in one repeatable-read transaction, so every event and the outbox rows committed
with it are in the dump or none is). A restore goes into a *new* database, never over a live
one; the read models are then rebuilt from the restored event store
(``manage.py rebuild_projections``), which also proves that the event store alone carries them.

The PostgreSQL client tools (``pg_dump``, ``pg_restore``) of the server's major version or
newer must be on ``PATH``; they get the connection from the libpq environment variables, so no
password appears on a command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql


class BackupError(Exception):
    """A backup or restore step that failed, with what the tool said."""


def libpq_env(database: dict[str, Any]) -> dict[str, str]:
    """The environment that points libpq's tools at a Django database's settings."""
    env = {**os.environ}
    values = {
        "PGHOST": database.get("HOST") or "",
        "PGPORT": str(database.get("PORT") or ""),
        "PGUSER": database.get("USER") or "",
        "PGPASSWORD": database.get("PASSWORD") or "",
        "PGDATABASE": database.get("NAME") or "",
        "PGSSLMODE": (database.get("OPTIONS") or {}).get("sslmode", ""),
    }
    env.update({name: value for name, value in values.items() if value})
    return env


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} is not on PATH (install the PostgreSQL client tools)")
    return path


def _run(args: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise BackupError(f"{Path(args[0]).name} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def dump(database: dict[str, Any], path: Path) -> int:
    """Write a custom-format dump of ``database`` to ``path``; returns how many objects it lists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    env = libpq_env(database)
    _run([_tool("pg_dump"), "--format=custom", "--compress=6", f"--file={partial}"], env)
    listing = _run([_tool("pg_restore"), "--list", str(partial)], env)  # the archive reads back
    partial.replace(path)  # a backup exists only once it is complete
    return sum(1 for line in listing.splitlines() if line and not line.startswith(";"))


def _maintenance(database: dict[str, Any]) -> psycopg.Connection[Any]:
    """A connection to the server's ``postgres`` database, to create or inspect others."""
    env = libpq_env({**database, "NAME": "postgres"})
    return psycopg.connect(
        host=env.get("PGHOST"),
        port=env.get("PGPORT"),
        user=env.get("PGUSER"),
        password=env.get("PGPASSWORD"),
        dbname="postgres",
        sslmode=env.get("PGSSLMODE") or None,
        autocommit=True,
    )


def prepare_target(database: dict[str, Any]) -> bool:
    """Create the target database if it is missing; refuse one that holds tables.

    Returns whether it was created.
    """
    name = str(database["NAME"])
    with _maintenance(database) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    env = libpq_env(database)
    with psycopg.connect(
        host=env.get("PGHOST"),
        port=env.get("PGPORT"),
        user=env.get("PGUSER"),
        password=env.get("PGPASSWORD"),
        dbname=name,
        sslmode=env.get("PGSSLMODE") or None,
    ) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()
    if tables and tables[0]:
        raise BackupError(f"database {name} is not empty: a restore goes into a new or empty database")
    return False


def restore(path: Path, database: dict[str, Any]) -> None:
    """Restore the dump at ``path`` into the (new or empty) ``database``, all or nothing."""
    if not path.is_file():
        raise BackupError(f"no backup at {path}")
    env = libpq_env(database)
    _run(
        [
            _tool("pg_restore"),
            "--exit-on-error",
            "--single-transaction",
            "--no-owner",
            "--no-privileges",
            f"--dbname={database['NAME']}",
            str(path),
        ],
        env,
    )
