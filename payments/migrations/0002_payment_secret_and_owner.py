"""Card tokens leave the event log; payments records whose payment it is.

Two data steps, both idempotent and both leaving the event log as it is (it is append-only):

- a payment still running (PENDING/UNKNOWN) whose ``PaymentRequested`` was written with the
  token in it gets a ``payment_secret`` row with that token (reference ``""``, as the aggregate
  reads such an event), so its charge can still run; nothing is kept for a settled payment;
- ``customer_id`` is filled in from the saga's row of the order where that table exists: payments
  had no record of it before, and the owner's ``GET /api/payments/{order_id}`` depends on it.
"""

from django.db import migrations, models
from django.utils import timezone

_RUNNING = ("PENDING", "UNKNOWN")


def hold_tokens_of_running_payments(apps, schema_editor):
    PaymentRecord = apps.get_model("payments", "PaymentRecord")
    PaymentSecret = apps.get_model("payments", "PaymentSecret")
    StoredEvent = apps.get_model("eventstore", "StoredEvent")
    db = schema_editor.connection.alias
    running = PaymentRecord.objects.using(db).filter(status__in=_RUNNING).values_list("order_id", flat=True)
    now = timezone.now()
    for order_id in running.iterator():
        requested = (
            StoredEvent.objects.using(db)
            .filter(aggregate_id=f"payment-{order_id}", event_type="PaymentRequested")
            .order_by("-version")
            .values_list("event_data", flat=True)
            .first()
        )
        token = (requested or {}).get("token")
        if token:
            PaymentSecret.objects.using(db).get_or_create(
                order_id=order_id,
                defaults={"reference": str(requested.get("reference", "")), "token": token, "created_at": now},
            )


def record_owners_from_sagas(apps, schema_editor):
    connection = schema_editor.connection
    if "saga_instance" not in connection.introspection.table_names():
        return  # payments installed without the sagas context: no owner to learn
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote('payments_payment')} SET {quote('customer_id')} = COALESCE(("
            f"SELECT s.{quote('customer_id')} FROM {quote('saga_instance')} s "
            f"WHERE s.{quote('order_id')} = {quote('payments_payment')}.{quote('order_id')}), '') "
            f"WHERE {quote('customer_id')} = ''"
        )


class Migration(migrations.Migration):

    dependencies = [
        ('payments', '0001_initial'),
        ('eventstore', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='PaymentSecret',
            fields=[
                ('order_id', models.CharField(max_length=64, primary_key=True, serialize=False)),
                ('reference', models.CharField(max_length=64)),
                ('token', models.CharField(max_length=128)),
                ('created_at', models.DateTimeField()),
            ],
            options={
                'db_table': 'payment_secret',
            },
        ),
        migrations.AddField(
            model_name='paymentrecord',
            name='customer_id',
            field=models.CharField(blank=True, default='', max_length=64),
        ),
        migrations.RunPython(hold_tokens_of_running_payments, migrations.RunPython.noop),
        migrations.RunPython(record_owners_from_sagas, migrations.RunPython.noop),
    ]
