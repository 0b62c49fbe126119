-- Team expenses: members advance money for the team and the center pays it back by
-- group and quarter. Expenses are append-only: a mistake is voided by a reversing row
-- (`reverses_id`, unique, so an expense is voided once), never deleted or re-priced.
CREATE TABLE expense_groups (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(32) COLLATE utf8mb4_bin NOT NULL,
    created_by BIGINT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    UNIQUE KEY expense_groups_name (name),
    FOREIGN KEY (created_by) REFERENCES users (id),
    CONSTRAINT expense_groups_name_len CHECK (char_length(name) >= 1)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- A user belongs to at most one group (the key), so an expense needs no group in its request.
CREATE TABLE group_members (
    user_id BIGINT NOT NULL PRIMARY KEY,
    group_id BIGINT NOT NULL,
    leader BOOLEAN NOT NULL DEFAULT FALSE,
    added_by BIGINT NOT NULL,
    added_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    INDEX group_members_group (group_id, user_id),
    FOREIGN KEY (user_id) REFERENCES users (id),
    FOREIGN KEY (group_id) REFERENCES expense_groups (id),
    FOREIGN KEY (added_by) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- One batch paid back: who, when, how much.
CREATE TABLE reimbursements (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    group_id BIGINT NOT NULL,
    quarter CHAR(6) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    total_fen BIGINT NOT NULL,
    expense_count BIGINT NOT NULL,
    reimbursed_by BIGINT NOT NULL,
    reimbursed_at DATETIME(6) NOT NULL,
    INDEX reimbursements_group (group_id, quarter, id),
    FOREIGN KEY (group_id) REFERENCES expense_groups (id),
    FOREIGN KEY (reimbursed_by) REFERENCES users (id),
    CONSTRAINT reimbursements_count CHECK (expense_count >= 1)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- `spent_on` is the Beijing day (YYYY-MM-DD) and `quarter` its quarter (2026Q4), both
-- text so that they sort and compare alike on both backends.
CREATE TABLE expenses (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    group_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    kind VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    amount_fen BIGINT NOT NULL,
    what VARCHAR(64) NOT NULL,
    spent_on CHAR(10) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    quarter CHAR(6) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    reverses_id BIGINT NULL,
    source VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    recorded_by BIGINT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    reimbursement_id BIGINT NULL,
    UNIQUE KEY expenses_reverses (reverses_id),
    INDEX expenses_group_quarter (group_id, quarter, reimbursement_id),
    INDEX expenses_user (user_id, id),
    INDEX expenses_quarter (quarter, id),
    FOREIGN KEY (group_id) REFERENCES expense_groups (id),
    FOREIGN KEY (user_id) REFERENCES users (id),
    FOREIGN KEY (reverses_id) REFERENCES expenses (id),
    FOREIGN KEY (recorded_by) REFERENCES users (id),
    FOREIGN KEY (reimbursement_id) REFERENCES reimbursements (id),
    CONSTRAINT expenses_kind CHECK (kind IN ('expense', 'reversal')),
    CONSTRAINT expenses_source CHECK (source IN ('app', 'official_account')),
    CONSTRAINT expenses_what CHECK (char_length(what) >= 1),
    CONSTRAINT expenses_amount CHECK ((kind = 'expense' AND amount_fen BETWEEN 1 AND 10000000 AND reverses_id IS NULL)
        OR (kind = 'reversal' AND amount_fen BETWEEN -10000000 AND -1 AND reverses_id IS NOT NULL))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
