-- The seed's create-order transaction as raw SQL, for pgbench (bench/run.py runs it with -f).
-- One event row (OrderCreated) and one outbox row, in one transaction, on the same tables the
-- product writes (a scratch database with the bench database's schema, dumped without rows,
-- so indexes, the unique (aggregate_id, version) constraint and the tx xid8 default
-- all cost what they cost the product). The body is the size of a one-line order.
\set n random(1, 1000000000)
BEGIN;
INSERT INTO event_store (message_id, aggregate_id, aggregate_type, event_type, event_data, version,
                         timestamp, correlation_id, causation_id, trace_id)
VALUES (gen_random_uuid(), gen_random_uuid()::text, 'order', 'OrderCreated',
        jsonb_build_object('order_id', :n, 'customer_id', 'alice', 'status', 'PENDING',
                           'items', jsonb_build_array(jsonb_build_object('product_id', 'SKU-0001',
                               'product_name', 'Wireless Mouse', 'quantity', 1, 'price', '25.00')),
                           'total_amount', '25.00', 'payment_method', 'card'),
        1, now(), '', '', '');
INSERT INTO event_outbox (message_id, exchange, routing_key, body, headers, created_at, attempts,
                          last_error)
VALUES (gen_random_uuid(), 'oms.events', 'orders.OrderCreated',
        jsonb_build_object('type', 'OrderCreated', 'order_id', :n, 'customer_id', 'alice',
                           'total_amount', '25.00'),
        '{}'::jsonb, now(), 0, '');
END;
