-- Images users upload (avatars, proof-of-delivery photos), stored by content hash with their
-- metadata stripped. Each is checked by WeChat (media_check_async, answered later by a push
-- naming the trace_id); only one that passed is shown to others, by copying its URL to the
-- user or the order. `submit_after` is when the check is due to be (re)submitted: NULL once
-- WeChat took it.
CREATE TABLE uploads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id),
    purpose TEXT NOT NULL CHECK (purpose IN ('avatar', 'delivery_photo')),
    order_id INTEGER REFERENCES orders (id),
    object_key TEXT NOT NULL CHECK (length(object_key) BETWEEN 1 AND 80),
    url TEXT NOT NULL CHECK (length(url) BETWEEN 1 AND 512),
    byte_size INTEGER NOT NULL CHECK (byte_size > 0),
    width INTEGER NOT NULL CHECK (width > 0),
    height INTEGER NOT NULL CHECK (height > 0),
    check_status TEXT NOT NULL CHECK (check_status IN ('pending', 'pass', 'risky', 'review')),
    trace_id TEXT UNIQUE CHECK (length(trace_id) BETWEEN 1 AND 128),
    submit_after TEXT,
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    checked_at TEXT,
    CHECK ((purpose = 'delivery_photo') = (order_id IS NOT NULL))
) STRICT;
CREATE INDEX uploads_to_submit ON uploads (submit_after);
-- What others see: the URL of the newest image that passed its check.
ALTER TABLE users ADD COLUMN avatar_url TEXT;
ALTER TABLE orders ADD COLUMN delivery_photo_url TEXT;
