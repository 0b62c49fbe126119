-- Coupons an admin issues. `claimed` is the stock counter every claim moves with a
-- compare-and-set (claimed < stock), so it is never more than the stock.
CREATE TABLE coupons (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    title VARCHAR(64) NOT NULL,
    discount_kind VARCHAR(16) NOT NULL,
    discount_fen BIGINT NULL,
    percent_off INT NULL,
    max_discount_fen BIGINT NULL,
    min_amount_fen BIGINT NOT NULL,
    stock BIGINT NOT NULL,
    claimed BIGINT NOT NULL DEFAULT 0,
    per_user_limit INT NOT NULL,
    valid_days INT NULL,
    valid_until DATETIME(6) NULL,
    kinds VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
    keyword VARCHAR(32) COLLATE utf8mb4_bin NULL,
    status VARCHAR(16) NOT NULL,
    created_by BIGINT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    stopped_at DATETIME(6) NULL,
    INDEX coupons_status (status, id),
    INDEX coupons_keyword (keyword, status),
    FOREIGN KEY (created_by) REFERENCES users (id),
    CONSTRAINT coupons_title CHECK (char_length(title) >= 1),
    CONSTRAINT coupons_discount_kind CHECK (discount_kind IN ('fixed', 'percent')),
    CONSTRAINT coupons_amounts CHECK (discount_fen >= 1 AND max_discount_fen >= 1 AND min_amount_fen >= 0),
    CONSTRAINT coupons_percent CHECK (percent_off BETWEEN 1 AND 100),
    CONSTRAINT coupons_stock CHECK (stock >= 1 AND claimed >= 0 AND claimed <= stock),
    CONSTRAINT coupons_per_user CHECK (per_user_limit >= 1),
    CONSTRAINT coupons_valid_days CHECK (valid_days >= 1),
    CONSTRAINT coupons_status CHECK (status IN ('active', 'stopped')),
    CONSTRAINT coupons_shape CHECK ((discount_kind = 'fixed' AND discount_fen IS NOT NULL AND percent_off IS NULL)
        OR (discount_kind = 'percent' AND percent_off IS NOT NULL AND max_discount_fen IS NOT NULL AND discount_fen IS NULL)),
    CONSTRAINT coupons_validity CHECK ((valid_days IS NULL) <> (valid_until IS NULL))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- One row per claim. `seq` numbers a user's claims of a coupon (1..per_user_limit):
-- with the unique key it is the last word on the per-user limit. An order holds at
-- most one coupon (unique order_id; NULL while none holds it).
CREATE TABLE user_coupons (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    coupon_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    seq INT NOT NULL,
    status VARCHAR(16) NOT NULL,
    order_id BIGINT NULL,
    claimed_at DATETIME(6) NOT NULL,
    expires_at DATETIME(6) NOT NULL,
    locked_at DATETIME(6) NULL,
    used_at DATETIME(6) NULL,
    updated_at DATETIME(6) NOT NULL,
    UNIQUE KEY user_coupons_seq (coupon_id, user_id, seq),
    UNIQUE KEY user_coupons_order (order_id),
    INDEX user_coupons_user (user_id, status, id),
    INDEX user_coupons_expiry (status, expires_at),
    FOREIGN KEY (coupon_id) REFERENCES coupons (id),
    FOREIGN KEY (user_id) REFERENCES users (id),
    FOREIGN KEY (order_id) REFERENCES orders (id),
    CONSTRAINT user_coupons_seq_min CHECK (seq >= 1),
    CONSTRAINT user_coupons_status CHECK (status IN ('available', 'locked', 'used', 'expired')),
    CONSTRAINT user_coupons_held CHECK (status NOT IN ('locked', 'used') OR order_id IS NOT NULL)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
