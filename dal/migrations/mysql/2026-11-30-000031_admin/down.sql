DROP INDEX payment_events_created_at ON payment_events;
DROP INDEX orders_created_at ON orders;
ALTER TABLE users DROP COLUMN banned_at;
