-- Runner earnings: an append-only ledger. A runner's balance is the sum of amount_fen;
-- (kind, reference) makes every credit and debit happen once per cause.
CREATE TABLE earnings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    runner_id INTEGER NOT NULL REFERENCES users (id),
    kind TEXT NOT NULL CHECK (kind IN ('order_completed', 'refund_debit', 'withdrawal', 'withdrawal_returned')),
    amount_fen INTEGER NOT NULL,
    basis_fen INTEGER NOT NULL DEFAULT 0,
    order_id INTEGER REFERENCES orders (id),
    withdrawal_id INTEGER,
    reference TEXT NOT NULL CHECK (length(reference) <= 80),
    created_at TEXT NOT NULL,
    UNIQUE (kind, reference)
) STRICT;
CREATE INDEX earnings_runner ON earnings (runner_id, id);
CREATE INDEX earnings_order ON earnings (order_id);

-- Withdrawals: one partner_trade_no each, reused by every retry of its transfer.
CREATE TABLE withdrawals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    runner_id INTEGER NOT NULL REFERENCES users (id),
    partner_trade_no TEXT NOT NULL UNIQUE CHECK (length(partner_trade_no) BETWEEN 6 AND 32),
    amount_fen INTEGER NOT NULL CHECK (amount_fen >= 1),
    openid TEXT NOT NULL CHECK (length(openid) <= 128),
    description TEXT NOT NULL CHECK (length(description) <= 100),
    client_ip TEXT NOT NULL CHECK (length(client_ip) <= 45),
    status TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'succeeded', 'failed')),
    reason TEXT CHECK (length(reason) <= 500),
    payment_no TEXT CHECK (length(payment_no) <= 64),
    paid_at TEXT,
    unclear INTEGER NOT NULL DEFAULT 0 CHECK (unclear IN (0, 1)),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT CHECK (length(last_error) <= 500),
    beijing_day TEXT NOT NULL CHECK (length(beijing_day) = 10),
    decided_by INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    lease_until TEXT
) STRICT;
CREATE INDEX withdrawals_status ON withdrawals (status, id);
CREATE INDEX withdrawals_runner ON withdrawals (runner_id, id);
CREATE INDEX withdrawals_runner_day ON withdrawals (runner_id, beijing_day);

-- Daily bill reconciliations, one per Beijing day; the report is the served JSON.
CREATE TABLE reconciliations (
    bill_date TEXT PRIMARY KEY NOT NULL CHECK (length(bill_date) = 10),
    status TEXT NOT NULL CHECK (status IN ('matched', 'mismatched', 'no_bill')),
    report TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
