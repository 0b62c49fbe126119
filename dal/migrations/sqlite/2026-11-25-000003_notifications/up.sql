-- Sending credits the user granted: a legacy form_id (one send within 7 days) or a
-- subscribe-message acceptance (one send of that template).
CREATE TABLE notify_credits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id),
    kind TEXT NOT NULL CHECK (kind IN ('form_id', 'subscribe')),
    template_id TEXT CHECK (length(template_id) <= 128),
    form_id TEXT CHECK (length(form_id) <= 128),
    expires_at TEXT,
    used_at TEXT,
    created_at TEXT NOT NULL
) STRICT;
CREATE INDEX notify_credits_user ON notify_credits (user_id, used_at);

-- Every message send attempt and its outcome.
CREATE TABLE message_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id),
    channel TEXT NOT NULL CHECK (channel IN ('subscribe', 'official_account')),
    template_id TEXT CHECK (length(template_id) <= 128),
    event TEXT NOT NULL CHECK (length(event) <= 32),
    order_id INTEGER,
    outcome TEXT NOT NULL CHECK (length(outcome) <= 64),
    created_at TEXT NOT NULL
) STRICT;
CREATE INDEX message_log_user ON message_log (user_id, id);
