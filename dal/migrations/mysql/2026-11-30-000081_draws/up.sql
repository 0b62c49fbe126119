-- Lucky draws. `status` moves only by compare-and-set (open → locked → drawn,
-- open → cancelled); the move to `drawn` commits with the winners, so a draw is made
-- once whatever the number of instances. `seed` is fixed at the lock, before drawing,
-- so a draw redone after a crash picks the same winners.
CREATE TABLE draws (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    title VARCHAR(64) NOT NULL,
    status VARCHAR(16) NOT NULL,
    draw_at DATETIME(6) NOT NULL,
    lock_at DATETIME(6) NOT NULL,
    creator_id BIGINT NOT NULL,
    seed CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
    algorithm VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    drawn_at DATETIME(6) NULL,
    cancelled_at DATETIME(6) NULL,
    INDEX draws_due (status, lock_at),
    INDEX draws_creator (creator_id, id),
    FOREIGN KEY (creator_id) REFERENCES users (id),
    CONSTRAINT draws_title CHECK (char_length(title) >= 1),
    CONSTRAINT draws_status CHECK (status IN ('open', 'locked', 'drawn', 'cancelled')),
    CONSTRAINT draws_seed CHECK (status IN ('open', 'cancelled') OR seed IS NOT NULL)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Prizes in the order they are drawn (`position` 0, 1, ...).
CREATE TABLE draw_prizes (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    draw_id BIGINT NOT NULL,
    position INT NOT NULL,
    name VARCHAR(64) NOT NULL,
    count INT NOT NULL,
    coupon_id BIGINT NULL,
    UNIQUE KEY draw_prizes_position (draw_id, position),
    FOREIGN KEY (draw_id) REFERENCES draws (id),
    FOREIGN KEY (coupon_id) REFERENCES coupons (id),
    CONSTRAINT draw_prizes_name CHECK (char_length(name) >= 1),
    CONSTRAINT draw_prizes_count CHECK (count >= 1 AND position >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE draw_participants (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    draw_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    joined_at DATETIME(6) NOT NULL,
    UNIQUE KEY draw_participants_once (draw_id, user_id),
    INDEX draw_participants_user (user_id, draw_id),
    FOREIGN KEY (draw_id) REFERENCES draws (id),
    FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- One row per winner: the unique key is the last word on "at most one prize each".
CREATE TABLE draw_winners (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    draw_id BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    prize_id BIGINT NOT NULL,
    user_coupon_id BIGINT NULL,
    UNIQUE KEY draw_winners_once (draw_id, user_id),
    UNIQUE KEY draw_winners_coupon (user_coupon_id),
    FOREIGN KEY (draw_id) REFERENCES draws (id),
    FOREIGN KEY (user_id) REFERENCES users (id),
    FOREIGN KEY (prize_id) REFERENCES draw_prizes (id),
    FOREIGN KEY (user_coupon_id) REFERENCES user_coupons (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
