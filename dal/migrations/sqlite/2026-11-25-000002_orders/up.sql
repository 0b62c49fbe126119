CREATE TABLE orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    out_trade_no TEXT NOT NULL UNIQUE CHECK (length(out_trade_no) BETWEEN 6 AND 32),
    kind TEXT NOT NULL CHECK (kind IN ('express', 'takeout', 'errand')),
    status TEXT NOT NULL CHECK (status IN ('created', 'paid', 'accepted', 'picked_up', 'delivered', 'completed', 'closed', 'refunding', 'refunded')),
    pickup TEXT NOT NULL CHECK (length(pickup) <= 200),
    dropoff TEXT NOT NULL CHECK (length(dropoff) <= 200),
    note TEXT NOT NULL CHECK (length(note) <= 500),
    fee_fen INTEGER NOT NULL CHECK (fee_fen >= 0),
    goods_fen INTEGER NOT NULL CHECK (goods_fen >= 0),
    discount_fen INTEGER NOT NULL CHECK (discount_fen >= 0),
    amount_fen INTEGER NOT NULL CHECK (amount_fen >= 1),
    refunded_fen INTEGER NOT NULL DEFAULT 0,
    refund_reserved_fen INTEGER NOT NULL DEFAULT 0,
    customer_id INTEGER NOT NULL REFERENCES users (id),
    runner_id INTEGER REFERENCES users (id),
    pickup_code TEXT NOT NULL CHECK (length(pickup_code) <= 8),
    prepay_id TEXT CHECK (length(prepay_id) <= 64),
    prepay_expires_at TEXT,
    transaction_id TEXT CHECK (length(transaction_id) <= 64),
    pay_deadline TEXT NOT NULL,
    created_at TEXT NOT NULL,
    paid_at TEXT,
    accepted_at TEXT,
    picked_up_at TEXT,
    delivered_at TEXT,
    completed_at TEXT,
    closed_at TEXT,
    updated_at TEXT NOT NULL,
    lease_until TEXT,
    CHECK (refunded_fen >= 0 AND refunded_fen <= refund_reserved_fen AND refund_reserved_fen <= amount_fen)
) STRICT;
CREATE INDEX orders_status_created ON orders (status, created_at);
CREATE INDEX orders_customer ON orders (customer_id, id);
CREATE INDEX orders_runner ON orders (runner_id, id);

CREATE TABLE refunds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id INTEGER NOT NULL REFERENCES orders (id),
    out_refund_no TEXT NOT NULL UNIQUE CHECK (length(out_refund_no) <= 64),
    refund_fen INTEGER NOT NULL CHECK (refund_fen >= 1),
    reason TEXT NOT NULL CHECK (length(reason) <= 200),
    cause TEXT NOT NULL CHECK (cause IN ('cancel', 'admin', 'paid_after_close')),
    status TEXT NOT NULL CHECK (status IN ('requested', 'processing', 'success', 'failed')),
    refund_id TEXT CHECK (length(refund_id) <= 64),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT CHECK (length(last_error) <= 500),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    settled_at TEXT,
    lease_until TEXT
) STRICT;
CREATE INDEX refunds_status ON refunds (status);
CREATE INDEX refunds_order ON refunds (order_id);

-- Append-only ledger: one row per money movement, for reconciling against WeChat's bill.
CREATE TABLE payment_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id INTEGER NOT NULL REFERENCES orders (id),
    out_trade_no TEXT NOT NULL CHECK (length(out_trade_no) <= 32),
    event TEXT NOT NULL CHECK (event IN ('paid', 'refund_requested', 'refunded', 'refund_failed', 'closed')),
    amount_fen INTEGER NOT NULL,
    source TEXT NOT NULL CHECK (length(source) <= 16),
    reference TEXT NOT NULL CHECK (length(reference) <= 64),
    created_at TEXT NOT NULL,
    UNIQUE (order_id, event, reference)
) STRICT;

-- Every notify WeChat sent, raw, with what we made of it.
CREATE TABLE pay_notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('pay', 'refund')),
    out_trade_no TEXT CHECK (length(out_trade_no) <= 64),
    outcome TEXT NOT NULL CHECK (length(outcome) <= 64),
    body TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
