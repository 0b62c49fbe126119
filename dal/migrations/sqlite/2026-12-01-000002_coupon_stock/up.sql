-- A coupon's stock, split over rows ("shards", each with its own `cap`) so that on a
-- server with concurrent writers winning claims lock different rows; SQLite has one
-- writer, and the data layer gives its coupons one shard. A claim takes one unit from
-- one shard with a compare-and-set (taken < cap). The coupon's claimed count is the sum
-- of `taken`; nothing else moves it. `coupons.stock_shards` says how many rows there are,
-- so that a claim can pick one without reading them.
CREATE TABLE coupon_stock (
    coupon_id INTEGER NOT NULL REFERENCES coupons (id),
    shard INTEGER NOT NULL CHECK (shard >= 0),
    cap INTEGER NOT NULL CHECK (cap >= 1),
    taken INTEGER NOT NULL DEFAULT 0 CHECK (taken >= 0 AND taken <= cap),
    PRIMARY KEY (coupon_id, shard)
) STRICT, WITHOUT ROWID;

-- Existing coupons keep their stock and claims as one shard.
INSERT INTO coupon_stock (coupon_id, shard, cap, taken)
SELECT id, 0, stock, claimed FROM coupons;

ALTER TABLE coupons DROP COLUMN claimed;
ALTER TABLE coupons ADD COLUMN stock_shards INTEGER NOT NULL DEFAULT 1 CHECK (stock_shards >= 1);
