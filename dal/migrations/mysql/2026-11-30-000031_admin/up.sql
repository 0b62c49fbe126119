-- Operators: a banned user is refused on every authenticated call (checked per request).
ALTER TABLE users ADD COLUMN banned_at DATETIME(6) NULL;
-- The admin lists filter by these.
CREATE INDEX orders_created_at ON orders (created_at);
CREATE INDEX payment_events_created_at ON payment_events (created_at);
