ALTER TABLE coupons DROP COLUMN stock_shards;
ALTER TABLE coupons ADD COLUMN claimed INTEGER NOT NULL DEFAULT 0 CHECK (claimed >= 0);
UPDATE coupons SET claimed = (SELECT COALESCE(SUM(taken), 0) FROM coupon_stock WHERE coupon_id = coupons.id);
DROP TABLE coupon_stock;
