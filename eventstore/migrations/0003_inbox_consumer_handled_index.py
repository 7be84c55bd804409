"""The inbox index the retention needs (consumer, handled_at), built without blocking writes.

On PostgreSQL ``CREATE INDEX CONCURRENTLY`` (outside a transaction, hence ``atomic = False``):
the inbox is written by every consumer batch, and a plain build would hold them up for as long
as it takes on a large table. Elsewhere (SQLite) a plain index.
"""

from django.db import migrations, models

NAME = "event_inbox_consumer_handled"


def forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"CREATE INDEX {concurrently}IF NOT EXISTS {NAME} ON event_inbox (consumer, handled_at)")


def backward(apps, schema_editor):  # type: ignore[no-untyped-def]
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {NAME}")


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("eventstore", "0002_postgres_tx_and_append_only")]
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(
                    model_name="inboxmessage",
                    index=models.Index(fields=["consumer", "handled_at"], name=NAME),
                )
            ],
            database_operations=[migrations.RunPython(forward, backward)],
        )
    ]
