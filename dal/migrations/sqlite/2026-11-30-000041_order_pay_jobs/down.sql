DROP INDEX orders_wechat_close;
ALTER TABLE orders DROP COLUMN query_after;
ALTER TABLE orders DROP COLUMN wechat_close_at;
ALTER TABLE orders DROP COLUMN prepay_at;
