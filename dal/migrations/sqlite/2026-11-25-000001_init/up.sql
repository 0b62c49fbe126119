-- STRICT tables and CHECKs so SQLite rejects what MySQL would (see shared notes).
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    openid TEXT NOT NULL UNIQUE CHECK (length(openid) <= 64),
    role TEXT NOT NULL DEFAULT 'customer' CHECK (role IN ('customer', 'runner', 'admin')),
    nickname TEXT CHECK (length(nickname) <= 64),
    phone_enc TEXT CHECK (length(phone_enc) <= 255),
    dorm_enc TEXT CHECK (length(dorm_enc) <= 512),
    runner_applied_at TEXT,
    mp_openid TEXT UNIQUE CHECK (length(mp_openid) <= 64),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;

CREATE TABLE bind_codes (
    code TEXT PRIMARY KEY CHECK (length(code) <= 16),
    user_id INTEGER NOT NULL REFERENCES users (id),
    expires_at TEXT NOT NULL,
    used_at TEXT
) STRICT;

CREATE TABLE idempotency_keys (
    user_id INTEGER NOT NULL REFERENCES users (id),
    idem_key TEXT NOT NULL CHECK (length(idem_key) <= 128),
    request_hash TEXT NOT NULL CHECK (length(request_hash) <= 64),
    status_code INTEGER NOT NULL,
    response TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (user_id, idem_key)
) STRICT;
