-- An official-account message over the user's daily cap is recorded, not sent: 'capped'.
-- SQLite cannot alter a CHECK constraint, so the table is rebuilt.
CREATE TABLE mp_messages_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id),
    touser TEXT NOT NULL CHECK (length(touser) BETWEEN 1 AND 128),
    template_id TEXT NOT NULL CHECK (length(template_id) BETWEEN 1 AND 128),
    event TEXT NOT NULL,
    order_id INTEGER REFERENCES orders (id),
    event_key TEXT NOT NULL CHECK (length(event_key) BETWEEN 1 AND 128),
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'gave_up', 'unclear', 'capped')),
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at TEXT NOT NULL,
    last_error TEXT CHECK (length(last_error) <= 255),
    wechat_msgid TEXT CHECK (length(wechat_msgid) <= 32),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    sent_at TEXT,
    UNIQUE (user_id, event_key)
) STRICT;
INSERT INTO mp_messages_new (id, user_id, touser, template_id, event, order_id, event_key, payload, status,
    attempts, next_attempt_at, last_error, wechat_msgid, created_at, updated_at, sent_at)
SELECT id, user_id, touser, template_id, event, order_id, event_key, payload, status,
    attempts, next_attempt_at, last_error, wechat_msgid, created_at, updated_at, sent_at
FROM mp_messages;
DROP TABLE mp_messages;
ALTER TABLE mp_messages_new RENAME TO mp_messages;
CREATE INDEX mp_messages_due ON mp_messages (status, next_attempt_at);
