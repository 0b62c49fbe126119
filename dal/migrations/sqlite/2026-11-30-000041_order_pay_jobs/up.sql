-- When WeChat's order was first made (closeorder is refused for 5 minutes after it), when
-- WeChat's close of a locally closed order is due (NULL: nothing pending), and when the
-- reconcile job may next ask orderquery about it (its own claim, apart from the close job's
-- lease_until).
ALTER TABLE orders ADD COLUMN prepay_at TEXT;
ALTER TABLE orders ADD COLUMN wechat_close_at TEXT;
ALTER TABLE orders ADD COLUMN query_after TEXT;
CREATE INDEX orders_wechat_close ON orders (wechat_close_at);
