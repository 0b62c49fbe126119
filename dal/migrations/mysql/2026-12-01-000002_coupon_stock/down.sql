ALTER TABLE coupons DROP CONSTRAINT coupons_stock;
ALTER TABLE coupons DROP COLUMN stock_shards;
ALTER TABLE coupons ADD COLUMN claimed BIGINT NOT NULL DEFAULT 0 AFTER stock;
UPDATE coupons SET claimed = (SELECT COALESCE(SUM(taken), 0) FROM coupon_stock WHERE coupon_id = coupons.id);
ALTER TABLE coupons ADD CONSTRAINT coupons_stock CHECK (stock >= 1 AND claimed >= 0 AND claimed <= stock);
DROP TABLE coupon_stock;
