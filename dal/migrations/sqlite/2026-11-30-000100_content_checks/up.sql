-- Text users wrote that others see, and WeChat's content check of it (msg_sec_check): a row
-- for each text WeChat flagged for review, or could not check when it was written (checked
-- again by a job until it answers). `risky` text is refused when written, so a row is
-- `risky` only when the later check said so. Admins list them.
CREATE TABLE content_checks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id),
    subject TEXT NOT NULL CHECK (subject IN ('order', 'profile', 'draw', 'expense')),
    subject_id INTEGER NOT NULL,
    field TEXT NOT NULL CHECK (length(field) BETWEEN 1 AND 32),
    content TEXT NOT NULL CHECK (length(content) BETWEEN 1 AND 2500),
    verdict TEXT NOT NULL CHECK (verdict IN ('pending', 'pass', 'review', 'risky')),
    label INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    check_after TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    checked_at TEXT
) STRICT;
CREATE INDEX content_checks_due ON content_checks (check_after);
CREATE INDEX content_checks_verdict ON content_checks (verdict, id);
