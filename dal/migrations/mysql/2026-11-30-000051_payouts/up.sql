-- Runner earnings: an append-only ledger. A runner's balance is the sum of amount_fen;
-- (kind, reference) makes every credit and debit happen once per cause.
CREATE TABLE earnings (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    runner_id BIGINT NOT NULL,
    kind VARCHAR(32) NOT NULL,
    amount_fen BIGINT NOT NULL,
    basis_fen BIGINT NOT NULL DEFAULT 0,
    order_id BIGINT NULL,
    withdrawal_id BIGINT NULL,
    reference VARCHAR(80) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at DATETIME(6) NOT NULL,
    UNIQUE KEY earnings_once (kind, reference),
    INDEX earnings_runner (runner_id, id),
    INDEX earnings_order (order_id),
    FOREIGN KEY (runner_id) REFERENCES users (id),
    FOREIGN KEY (order_id) REFERENCES orders (id),
    CONSTRAINT earnings_kind CHECK (kind IN ('order_completed', 'refund_debit', 'withdrawal', 'withdrawal_returned'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Withdrawals: one partner_trade_no each, reused by every retry of its transfer.
CREATE TABLE withdrawals (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    runner_id BIGINT NOT NULL,
    partner_trade_no VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL UNIQUE,
    amount_fen BIGINT NOT NULL,
    openid VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    description VARCHAR(100) NOT NULL,
    client_ip VARCHAR(45) NOT NULL,
    status VARCHAR(16) NOT NULL,
    reason VARCHAR(500) NULL,
    payment_no VARCHAR(64) NULL,
    paid_at DATETIME(6) NULL,
    unclear BOOLEAN NOT NULL DEFAULT FALSE,
    attempts INT NOT NULL DEFAULT 0,
    last_error VARCHAR(500) NULL,
    beijing_day CHAR(10) NOT NULL,
    decided_by BIGINT NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    lease_until DATETIME(6) NULL,
    INDEX withdrawals_status (status, id),
    INDEX withdrawals_runner (runner_id, id),
    INDEX withdrawals_runner_day (runner_id, beijing_day),
    FOREIGN KEY (runner_id) REFERENCES users (id),
    CONSTRAINT withdrawals_status CHECK (status IN ('pending', 'processing', 'succeeded', 'failed')),
    CONSTRAINT withdrawals_amount CHECK (amount_fen >= 1)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Daily bill reconciliations, one per Beijing day; the report is the served JSON.
CREATE TABLE reconciliations (
    bill_date CHAR(10) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    status VARCHAR(16) NOT NULL,
    report MEDIUMTEXT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    CONSTRAINT reconciliations_status CHECK (status IN ('matched', 'mismatched', 'no_bill'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
