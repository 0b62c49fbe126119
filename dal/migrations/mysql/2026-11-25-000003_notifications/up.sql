CREATE TABLE notify_credits (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    kind VARCHAR(16) NOT NULL,
    template_id VARCHAR(128) NULL,
    form_id VARCHAR(128) NULL,
    expires_at DATETIME(6) NULL,
    used_at DATETIME(6) NULL,
    created_at DATETIME(6) NOT NULL,
    INDEX notify_credits_user (user_id, used_at),
    FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT notify_credits_kind CHECK (kind IN ('form_id', 'subscribe'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE message_log (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    channel VARCHAR(32) NOT NULL,
    template_id VARCHAR(128) NULL,
    event VARCHAR(32) NOT NULL,
    order_id BIGINT NULL,
    outcome VARCHAR(64) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    INDEX message_log_user (user_id, id),
    FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT message_log_channel CHECK (channel IN ('subscribe', 'official_account'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
