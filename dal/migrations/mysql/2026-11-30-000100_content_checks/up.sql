-- Text users wrote that others see, and WeChat's content check of it (msg_sec_check): a row
-- for each text WeChat flagged for review, or could not check when it was written (checked
-- again by a job until it answers). `risky` text is refused when written, so a row is
-- `risky` only when the later check said so. Admins list them.
CREATE TABLE content_checks (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    subject VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    subject_id BIGINT NOT NULL,
    field VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    content TEXT NOT NULL,
    verdict VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    label INT NULL,
    attempts INT NOT NULL DEFAULT 0,
    check_after DATETIME(6) NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    checked_at DATETIME(6) NULL,
    INDEX content_checks_due (check_after),
    INDEX content_checks_verdict (verdict, id),
    FOREIGN KEY (user_id) REFERENCES users (id),
    CONSTRAINT content_checks_subject CHECK (subject IN ('order', 'profile', 'draw', 'expense')),
    CONSTRAINT content_checks_verdict CHECK (verdict IN ('pending', 'pass', 'review', 'risky')),
    CONSTRAINT content_checks_attempts CHECK (attempts >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
