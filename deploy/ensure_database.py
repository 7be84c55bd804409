"""Create the PostgreSQL database named by ``DATABASE_URL`` when it does not exist yet.

``make stack`` runs it before ``migrate``; it connects to the server's ``postgres`` database
with the same credentials. Idempotent. Its one line is JSON, as every line of ``make stack``
(config/logging.py).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger("ensure_database")


def database_name(url: str) -> str:
    """The database part of a ``postgres://`` URL."""
    name = unquote(urlsplit(url).path.lstrip("/"))
    if not name:
        raise ValueError(f"DATABASE_URL names no database: {url!r}")
    return name


def maintenance_url(url: str) -> str:
    """The same server and credentials, on the ``postgres`` database."""
    parts = urlsplit(url)
    return parts._replace(scheme="postgresql", path="/postgres").geturl()


def ensure_database(url: str) -> bool:
    """Create the database if it is missing; ``True`` when it was created."""
    name = database_name(url)
    with psycopg.connect(maintenance_url(url), autocommit=True, connect_timeout=10) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists:
            return False
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from config.logging import configure, logging_config

    os.environ.setdefault("OMS_PROCESS", "ensure_database")
    configure(logging_config())
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        logger.error("DATABASE_URL must be a postgres:// URL")
        raise SystemExit(1)
    try:
        created = ensure_database(url)
    except ValueError as error:
        logger.error("%s", error)
        raise SystemExit(1) from None
    logger.info("database %r %s", database_name(url), "created" if created else "exists")


if __name__ == "__main__":
    main()
