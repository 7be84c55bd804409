"""PostgreSQL only: the ``tx xid8`` column for gap-free position reads, and append-only rows."""

from django.db import migrations

FORWARD = [
    "ALTER TABLE event_store ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id()",
    "CREATE INDEX idx_event_store_tx_id ON event_store (tx, id)",
    """
    CREATE FUNCTION event_store_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'event_store is append-only: %% is not allowed', TG_OP;
    END $$
    """,
    """
    CREATE TRIGGER event_store_append_only BEFORE UPDATE OR DELETE ON event_store
    FOR EACH ROW EXECUTE FUNCTION event_store_append_only()
    """,
]
BACKWARD = [
    "DROP TRIGGER IF EXISTS event_store_append_only ON event_store",
    "DROP FUNCTION IF EXISTS event_store_append_only()",
    "DROP INDEX IF EXISTS idx_event_store_tx_id",
    "ALTER TABLE event_store DROP COLUMN IF EXISTS tx",
]


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        for statement in FORWARD:
            schema_editor.execute(statement)


def backward(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        for statement in BACKWARD:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("eventstore", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
