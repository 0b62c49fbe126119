-- The outbox of official-account template messages: a row is written before the send,
-- claimed by one sender at a time (`status` compare-and-set), and retried with backoff
-- until sent or failed for good. The unique key makes an event one message per user.
CREATE TABLE mp_messages (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    touser VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    template_id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    event VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    order_id BIGINT NULL,
    event_key VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    payload TEXT NOT NULL,
    status VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    attempts INT NOT NULL DEFAULT 0,
    next_attempt_at DATETIME(6) NOT NULL,
    last_error VARCHAR(255) NULL,
    wechat_msgid VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    sent_at DATETIME(6) NULL,
    UNIQUE KEY mp_messages_event (user_id, event_key),
    INDEX mp_messages_due (status, next_attempt_at),
    FOREIGN KEY (user_id) REFERENCES users (id),
    FOREIGN KEY (order_id) REFERENCES orders (id),
    CONSTRAINT mp_messages_status CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'gave_up', 'unclear')),
    CONSTRAINT mp_messages_attempts CHECK (attempts >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
