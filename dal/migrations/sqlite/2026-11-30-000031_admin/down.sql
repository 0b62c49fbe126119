DROP INDEX payment_events_created_at;
DROP INDEX orders_created_at;
ALTER TABLE users DROP COLUMN banned_at;
