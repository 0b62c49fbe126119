-- A coupon's stock, split over a few rows ("shards", each with its own `cap`): a claim
-- takes one unit from one shard with a compare-and-set (taken < cap), so concurrent
-- winning claims lock different rows and wait for each other only when they pick the
-- same shard. The coupon's claimed count is the sum of `taken`; nothing else moves it.
-- `coupons.stock_shards` says how many rows there are, so that a claim can pick one
-- without reading them.
CREATE TABLE coupon_stock (
    coupon_id BIGINT NOT NULL,
    shard INT NOT NULL,
    cap BIGINT NOT NULL,
    taken BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (coupon_id, shard),
    FOREIGN KEY (coupon_id) REFERENCES coupons (id),
    CONSTRAINT coupon_stock_shard CHECK (shard >= 0),
    CONSTRAINT coupon_stock_taken CHECK (cap >= 1 AND taken >= 0 AND taken <= cap)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Existing coupons keep their stock and claims as one shard.
INSERT INTO coupon_stock (coupon_id, shard, cap, taken)
SELECT id, 0, stock, claimed FROM coupons;

ALTER TABLE coupons DROP CONSTRAINT coupons_stock;
ALTER TABLE coupons DROP COLUMN claimed;
ALTER TABLE coupons ADD COLUMN stock_shards INT NOT NULL DEFAULT 1 AFTER stock;
ALTER TABLE coupons ADD CONSTRAINT coupons_stock CHECK (stock >= 1 AND stock_shards BETWEEN 1 AND stock);
