-- Team expenses: members advance money for the team and the center pays it back by
-- group and quarter. Expenses are append-only: a mistake is voided by a reversing row
-- (`reverses_id`, unique, so an expense is voided once), never deleted or re-priced.
CREATE TABLE expense_groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 32),
    created_by INTEGER NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL
) STRICT;

-- A user belongs to at most one group (the key), so an expense needs no group in its request.
CREATE TABLE group_members (
    user_id INTEGER PRIMARY KEY REFERENCES users (id),
    group_id INTEGER NOT NULL REFERENCES expense_groups (id),
    leader INTEGER NOT NULL DEFAULT 0 CHECK (leader IN (0, 1)),
    added_by INTEGER NOT NULL REFERENCES users (id),
    added_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;
CREATE INDEX group_members_group ON group_members (group_id, user_id);

-- One batch paid back: who, when, how much.
CREATE TABLE reimbursements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id INTEGER NOT NULL REFERENCES expense_groups (id),
    quarter TEXT NOT NULL CHECK (length(quarter) = 6),
    total_fen INTEGER NOT NULL,
    expense_count INTEGER NOT NULL CHECK (expense_count >= 1),
    reimbursed_by INTEGER NOT NULL REFERENCES users (id),
    reimbursed_at TEXT NOT NULL
) STRICT;
CREATE INDEX reimbursements_group ON reimbursements (group_id, quarter, id);

-- `spent_on` is the Beijing day (YYYY-MM-DD) and `quarter` its quarter (2026Q4), both
-- text so that they sort and compare alike on both backends.
CREATE TABLE expenses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id INTEGER NOT NULL REFERENCES expense_groups (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    kind TEXT NOT NULL CHECK (kind IN ('expense', 'reversal')),
    amount_fen INTEGER NOT NULL,
    what TEXT NOT NULL CHECK (length(what) BETWEEN 1 AND 64),
    spent_on TEXT NOT NULL CHECK (length(spent_on) = 10),
    quarter TEXT NOT NULL CHECK (length(quarter) = 6),
    reverses_id INTEGER UNIQUE REFERENCES expenses (id),
    source TEXT NOT NULL CHECK (source IN ('app', 'official_account')),
    recorded_by INTEGER NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL,
    reimbursement_id INTEGER REFERENCES reimbursements (id),
    CHECK ((kind = 'expense' AND amount_fen BETWEEN 1 AND 10000000 AND reverses_id IS NULL)
        OR (kind = 'reversal' AND amount_fen BETWEEN -10000000 AND -1 AND reverses_id IS NOT NULL))
) STRICT;
CREATE INDEX expenses_group_quarter ON expenses (group_id, quarter, reimbursement_id);
CREATE INDEX expenses_user ON expenses (user_id, id);
CREATE INDEX expenses_quarter ON expenses (quarter, id);
