"""Clear the card token of every saga that can no longer send ProcessPayment.

From now on a saga forgets the token as soon as it moves past its payment step (the payment
processed or failed, or the saga compensating or ended: ``Saga.may_still_pay``); this does the
same for the rows written before. Idempotent; irreversible by nature (nothing to restore).
"""

from django.db import migrations
from django.db.models import Q

_MAY_STILL_PAY = Q(state__in=["STARTED", "INVENTORY_RESERVED"]) | Q(state="PAYMENT_PROCESSING", step="PROCESS_PAYMENT")


def forget_tokens(apps, schema_editor):
    SagaInstance = apps.get_model("sagas", "SagaInstance")
    db = schema_editor.connection.alias
    SagaInstance.objects.using(db).exclude(_MAY_STILL_PAY).exclude(payment_token="").update(payment_token="")


class Migration(migrations.Migration):
    dependencies = [
        ("sagas", "0002_saga_commands_and_expiry"),
    ]

    operations = [
        migrations.RunPython(forget_tokens, migrations.RunPython.noop),
    ]
