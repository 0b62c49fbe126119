CREATE TABLE refunds_old (
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
INSERT INTO refunds_old (id, order_id, out_refund_no, refund_fen, reason, cause, status,
    refund_id, attempts, last_error, created_at, updated_at, settled_at, lease_until)
SELECT id, order_id, out_refund_no, refund_fen, reason, cause,
    CASE status WHEN 'manual' THEN 'processing' ELSE status END,
    refund_id, attempts, last_error, created_at, updated_at, settled_at, lease_until
FROM refunds;
DROP TABLE refunds;
ALTER TABLE refunds_old RENAME TO refunds;
CREATE INDEX refunds_status ON refunds (status);
CREATE INDEX refunds_order ON refunds (order_id);
