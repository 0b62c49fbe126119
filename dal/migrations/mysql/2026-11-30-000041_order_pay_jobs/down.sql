DROP INDEX orders_wechat_close ON orders;
ALTER TABLE orders
    DROP COLUMN query_after,
    DROP COLUMN wechat_close_at,
    DROP COLUMN prepay_at;
