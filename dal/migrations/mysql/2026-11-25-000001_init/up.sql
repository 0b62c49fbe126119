-- Identifiers compare byte-wise (ascii_bin): MySQL's default collation is case-insensitive.
CREATE TABLE users (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    openid VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL UNIQUE,
    role VARCHAR(16) NOT NULL DEFAULT 'customer',
    nickname VARCHAR(64) NULL,
    phone_enc VARCHAR(255) NULL,
    dorm_enc VARCHAR(512) NULL,
    runner_applied_at DATETIME(6) NULL,
    mp_openid VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL UNIQUE,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    CONSTRAINT users_role CHECK (role IN ('customer', 'runner', 'admin'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE bind_codes (
    code VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    user_id BIGINT NOT NULL,
    expires_at DATETIME(6) NOT NULL,
    used_at DATETIME(6) NULL,
    FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE idempotency_keys (
    user_id BIGINT NOT NULL,
    idem_key VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    request_hash VARCHAR(64) NOT NULL,
    status_code INT NOT NULL,
    response TEXT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (user_id, idem_key),
    FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
