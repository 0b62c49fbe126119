-- Coupons an admin issues. `claimed` is the stock counter every claim moves with a
-- compare-and-set (claimed < stock), so it is never more than the stock.
CREATE TABLE coupons (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 64),
    discount_kind TEXT NOT NULL CHECK (discount_kind IN ('fixed', 'percent')),
    discount_fen INTEGER CHECK (discount_fen >= 1),
    percent_off INTEGER CHECK (percent_off BETWEEN 1 AND 100),
    max_discount_fen INTEGER CHECK (max_discount_fen >= 1),
    min_amount_fen INTEGER NOT NULL CHECK (min_amount_fen >= 0),
    stock INTEGER NOT NULL CHECK (stock >= 1),
    claimed INTEGER NOT NULL DEFAULT 0 CHECK (claimed >= 0 AND claimed <= stock),
    per_user_limit INTEGER NOT NULL CHECK (per_user_limit >= 1),
    valid_days INTEGER CHECK (valid_days >= 1),
    valid_until TEXT,
    kinds TEXT CHECK (length(kinds) <= 64),
    keyword TEXT CHECK (length(keyword) <= 32),
    status TEXT NOT NULL CHECK (status IN ('active', 'stopped')),
    created_by INTEGER NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    stopped_at TEXT,
    CHECK ((discount_kind = 'fixed' AND discount_fen IS NOT NULL AND percent_off IS NULL)
        OR (discount_kind = 'percent' AND percent_off IS NOT NULL AND max_discount_fen IS NOT NULL AND discount_fen IS NULL)),
    CHECK ((valid_days IS NULL) <> (valid_until IS NULL))
) STRICT;
CREATE INDEX coupons_status ON coupons (status, id);
CREATE INDEX coupons_keyword ON coupons (keyword, status);

-- One row per claim. `seq` numbers a user's claims of a coupon (1..per_user_limit):
-- with the unique key it is the last word on the per-user limit. An order holds at
-- most one coupon (unique order_id; NULL while none holds it).
CREATE TABLE user_coupons (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    coupon_id INTEGER NOT NULL REFERENCES coupons (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    seq INTEGER NOT NULL CHECK (seq >= 1),
    status TEXT NOT NULL CHECK (status IN ('available', 'locked', 'used', 'expired')),
    order_id INTEGER UNIQUE REFERENCES orders (id),
    claimed_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    locked_at TEXT,
    used_at TEXT,
    updated_at TEXT NOT NULL,
    UNIQUE (coupon_id, user_id, seq),
    CHECK (status NOT IN ('locked', 'used') OR order_id IS NOT NULL)
) STRICT;
CREATE INDEX user_coupons_user ON user_coupons (user_id, status, id);
CREATE INDEX user_coupons_expiry ON user_coupons (status, expires_at);
