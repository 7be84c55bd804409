from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("eventstore", "0003_inbox_consumer_handled_index"),
    ]

    operations = [
        # The version of an event's fields (eventstore.catalogue); every event stored so far is 1.
        # A database default, so a writer that does not name the column (bench's pgbench
        # script) stores 1 as well.
        migrations.AddField(
            model_name="storedevent",
            name="schema_version",
            field=models.PositiveSmallIntegerField(db_default=1, default=1),
        ),
    ]
