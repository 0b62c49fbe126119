-- Images users upload (avatars, proof-of-delivery photos), stored by content hash with their
-- metadata stripped. Each is checked by WeChat (media_check_async, answered later by a push
-- naming the trace_id); only one that passed is shown to others, by copying its URL to the
-- user or the order. `submit_after` is when the check is due to be (re)submitted: NULL once
-- WeChat took it.
CREATE TABLE uploads (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    purpose VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    order_id BIGINT NULL,
    object_key VARCHAR(80) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    url VARCHAR(512) NOT NULL,
    byte_size INT NOT NULL,
    width INT NOT NULL,
    height INT NOT NULL,
    check_status VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    trace_id VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NULL,
    submit_after DATETIME(6) NULL,
    attempts INT NOT NULL DEFAULT 0,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    checked_at DATETIME(6) NULL,
    UNIQUE KEY uploads_trace (trace_id),
    INDEX uploads_to_submit (submit_after),
    FOREIGN KEY (user_id) REFERENCES users (id),
    FOREIGN KEY (order_id) REFERENCES orders (id),
    CONSTRAINT uploads_purpose CHECK (purpose IN ('avatar', 'delivery_photo')),
    CONSTRAINT uploads_check_status CHECK (check_status IN ('pending', 'pass', 'risky', 'review')),
    CONSTRAINT uploads_sizes CHECK (byte_size > 0 AND width > 0 AND height > 0 AND attempts >= 0),
    CONSTRAINT uploads_order CHECK ((purpose = 'delivery_photo') = (order_id IS NOT NULL))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
-- What others see: the URL of the newest image that passed its check.
ALTER TABLE users ADD COLUMN avatar_url VARCHAR(512) NULL;
ALTER TABLE orders ADD COLUMN delivery_photo_url VARCHAR(512) NULL;
