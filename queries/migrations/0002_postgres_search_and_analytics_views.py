"""Projection state rows; on PostgreSQL the full-text column and the analytics materialized views.

The views read the active generation of the read models, are refreshed CONCURRENTLY by the
``queries.tasks.refresh_analytics`` beat task (so analytics never blocks the projection), and
each has the unique index that a concurrent refresh needs.
"""

from django.db import migrations

POSTGRES_FORWARD = [
    "ALTER TABLE order_read_model ADD COLUMN search_vector tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple', search_text)) STORED",
    "CREATE INDEX order_read_model_search_gin ON order_read_model USING GIN (search_vector)",
    """
    CREATE MATERIALIZED VIEW analytics_daily_orders AS
    SELECT (o.created_at AT TIME ZONE 'UTC')::date AS day,
           o.status AS status,
           count(*) AS orders,
           coalesce(sum(o.total_amount), 0) AS amount,
           count(p.id) FILTER (WHERE p.outcome = 'CAPTURED') AS payments_captured,
           count(p.id) FILTER (WHERE p.outcome = 'FAILED') AS payments_failed
      FROM order_read_model o
      JOIN queries_projection_state so ON so.name = 'orders' AND so.generation = o.generation
      LEFT JOIN queries_projection_state sp ON sp.name = 'payments'
      LEFT JOIN payment_read_model p ON p.order_id = o.order_id AND p.generation = sp.generation
     GROUP BY 1, 2
    """,
    "CREATE UNIQUE INDEX analytics_daily_orders_key ON analytics_daily_orders (day, status)",
    """
    CREATE MATERIALIZED VIEW analytics_daily_products AS
    SELECT (o.created_at AT TIME ZONE 'UTC')::date AS day,
           i.product_id AS product_id,
           max(i.product_name) AS product_name,
           sum(i.quantity) AS quantity,
           sum(i.price * i.quantity) AS revenue
      FROM order_item_read_model i
      JOIN order_read_model o ON o.id = i.order_id
      JOIN queries_projection_state so ON so.name = 'orders' AND so.generation = o.generation
     WHERE o.status = 'COMPLETED'
     GROUP BY 1, 2
    """,
    "CREATE UNIQUE INDEX analytics_daily_products_key ON analytics_daily_products (day, product_id)",
]

POSTGRES_BACKWARD = [
    "DROP MATERIALIZED VIEW IF EXISTS analytics_daily_products",
    "DROP MATERIALIZED VIEW IF EXISTS analytics_daily_orders",
    "DROP INDEX IF EXISTS order_read_model_search_gin",
    "ALTER TABLE order_read_model DROP COLUMN IF EXISTS search_vector",
]

PROJECTIONS = ("orders", "payments")


def forward(apps, schema_editor):
    state = apps.get_model("queries", "ProjectionState")
    for name in PROJECTIONS:
        state.objects.get_or_create(name=name)
    if schema_editor.connection.vendor == "postgresql":
        for statement in POSTGRES_FORWARD:
            schema_editor.execute(statement)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in POSTGRES_BACKWARD:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("queries", "0001_initial")]

    operations = [migrations.RunPython(forward, backward)]
