-- The outbox of official-account template messages: a row is written before the send,
-- claimed by one sender at a time (`status` compare-and-set), and retried with backoff
-- until sent or failed for good. The unique key makes an event one message per user.
CREATE TABLE mp_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id),
    touser TEXT NOT NULL CHECK (length(touser) BETWEEN 1 AND 128),
    template_id TEXT NOT NULL CHECK (length(template_id) BETWEEN 1 AND 128),
    event TEXT NOT NULL,
    order_id INTEGER REFERENCES orders (id),
    event_key TEXT NOT NULL CHECK (length(event_key) BETWEEN 1 AND 128),
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'gave_up', 'unclear')),
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at TEXT NOT NULL,
    last_error TEXT CHECK (length(last_error) <= 255),
    wechat_msgid TEXT CHECK (length(wechat_msgid) <= 32),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    sent_at TEXT,
    UNIQUE (user_id, event_key)
) STRICT;
CREATE INDEX mp_messages_due ON mp_messages (status, next_attempt_at);
