"""``manage.py create_service_roles``: one PostgreSQL role per split service, limited to its tables.

Run by the database owner after ``migrate`` (``make split`` does; run it again after a migration
adds tables). Creates or updates the roles ``oms_orders``, ``oms_payments``, ``oms_inventory`` and
``oms_queries`` (LOGIN, no password: the local server trusts loopback; set one with
``ALTER ROLE`` elsewhere) and grants each one:

- read and write on its own contexts' tables (the orders service: orders and sagas), their
  sequences, and the read models' materialized views (the queries service owns them, as
  ``REFRESH MATERIALIZED VIEW`` requires);
- read and write on the event store's shared tables (events, outbox, inbox, stream cursors,
  dead letters): every service appends its events and consumes through them;
- read on ``django_migrations`` (the readiness probe) and ``django_content_type``; the orders
  service also gets the user, group, permission, session, login-attempt and token tables (it
  alone authenticates).

Every privilege it does not grant is revoked, so a query of another context's table from a
service is refused by PostgreSQL ("permission denied"), not answered. A table of no context is
reported, so a new one is not forgotten.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from config import services

# The event store's tables: shared infrastructure, written by every service.
SHARED_APPS = ("eventstore",)
# Django's tables every service reads.
READ_BY_ALL = ("django_migrations", "django_content_type")
# Apps whose tables belong to the service that authenticates (orders).
AUTH_APPS = ("auth", "sessions", "axes", "token_blacklist", "admin", "contenttypes")
# Relations made by raw SQL in migrations (no model): the context they belong to.
RAW_RELATIONS = {"analytics_daily_orders": "queries", "analytics_daily_products": "queries"}
# Apps whose tables no split service uses (the composition root's money audit runs in "all").
UNSERVED_APPS = ("audit", "composition")


def tables_of(app_label: str) -> set[str]:
    """The tables of an installed app's models (many-to-many tables included)."""
    try:
        config = apps.get_app_config(app_label)
    except LookupError:
        return set()
    return {
        model._meta.db_table
        for model in config.get_models(include_auto_created=True)
        if model._meta.managed and not model._meta.proxy
    }


def service_tables(service: str) -> tuple[set[str], set[str]]:
    """``(read-write tables, read-only tables)`` of one split service."""
    write: set[str] = set()
    for context in services.contexts_of(service):
        write |= tables_of(context)
        write |= {name for name, owner in RAW_RELATIONS.items() if owner == context}
    for app_label in SHARED_APPS:
        write |= tables_of(app_label)
    if "orders" in services.contexts_of(service):
        for app_label in AUTH_APPS:
            write |= tables_of(app_label)
    read = set(READ_BY_ALL) - write
    return write, read


class Command(BaseCommand):
    help = "Create or update the PostgreSQL roles of the split services, each limited to its own tables."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--service", action="append", choices=[s for s in services.SERVICES if s != services.ALL]
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("service roles need PostgreSQL (the stack mode)")
        chosen = options["service"] or [s for s in services.SERVICES if s != services.ALL]
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm')"
            )
            existing = dict(cursor.fetchall())
            self._report_unowned(existing)
            for service in chosen:
                self._grant(cursor, service, existing)

    def _report_unowned(self, existing: dict[str, str]) -> None:
        owned: set[str] = set(READ_BY_ALL) | set(RAW_RELATIONS)
        for config in apps.get_app_configs():
            if config.label not in UNSERVED_APPS:
                owned |= tables_of(config.label)
        for name in sorted(set(existing) - owned - {t for a in UNSERVED_APPS for t in tables_of(a)}):
            self.stderr.write(f"table {name} belongs to no service: no split service may use it")

    def _grant(self, cursor: Any, service: str, existing: dict[str, str]) -> None:
        role = services.role_of(service)
        quoted = connection.ops.quote_name(role)
        with transaction.atomic():
            # Roles are shared by every database of the server: another run may create it first.
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
            if cursor.fetchone() is None:
                cursor.execute("SAVEPOINT create_role")
                try:
                    cursor.execute(f"CREATE ROLE {quoted} LOGIN")
                except Exception:  # noqa: BLE001 - created meanwhile by another database's run
                    cursor.execute("ROLLBACK TO SAVEPOINT create_role")
            cursor.execute(f"ALTER ROLE {quoted} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
            cursor.execute("SELECT current_schema()")
            schema = connection.ops.quote_name(cursor.fetchone()[0])
            cursor.execute(f"GRANT USAGE ON SCHEMA {schema} TO {quoted}")
            cursor.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {quoted}")
            cursor.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {quoted}")
            write, read = service_tables(service)
            for table in sorted(write & set(existing)):
                name = connection.ops.quote_name(table)
                if existing[table] == "m":
                    # REFRESH MATERIALIZED VIEW is the owner's: the view goes to its service.
                    cursor.execute(f"ALTER MATERIALIZED VIEW {name} OWNER TO {quoted}")
                    cursor.execute(f"GRANT ALL ON {name} TO {quoted}")
                    continue
                cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {name} TO {quoted}")
                for sequence in self._sequences(cursor, table):
                    cursor.execute(f"GRANT USAGE, SELECT, UPDATE ON SEQUENCE {sequence} TO {quoted}")
            for table in sorted(read & set(existing)):
                cursor.execute(f"GRANT SELECT ON {connection.ops.quote_name(table)} TO {quoted}")
        self.stdout.write(
            f"role {role}: {len(write & set(existing))} tables, {len(read & set(existing))} read-only"
        )

    @staticmethod
    def _sequences(cursor: Any, table: str) -> list[str]:
        cursor.execute(
            "SELECT s.oid::regclass::text FROM pg_class s JOIN pg_depend d ON d.objid = s.oid "
            "WHERE s.relkind = 'S' AND d.refobjid = %s::regclass AND d.deptype IN ('a', 'i')",
            [connection.ops.quote_name(table)],
        )
        return [row[0] for row in cursor.fetchall()]
