-- Lucky draws. `status` moves only by compare-and-set (open → locked → drawn,
-- open → cancelled); the move to `drawn` commits with the winners, so a draw is made
-- once whatever the number of instances. `seed` is fixed at the lock, before drawing,
-- so a draw redone after a crash picks the same winners.
CREATE TABLE draws (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 64),
    status TEXT NOT NULL CHECK (status IN ('open', 'locked', 'drawn', 'cancelled')),
    draw_at TEXT NOT NULL,
    lock_at TEXT NOT NULL,
    creator_id INTEGER NOT NULL REFERENCES users (id),
    seed TEXT CHECK (length(seed) = 64),
    algorithm TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    drawn_at TEXT,
    cancelled_at TEXT,
    CHECK (status IN ('open', 'cancelled') OR seed IS NOT NULL)
) STRICT;
CREATE INDEX draws_due ON draws (status, lock_at);
CREATE INDEX draws_creator ON draws (creator_id, id);

-- Prizes in the order they are drawn (`position` 0, 1, ...).
CREATE TABLE draw_prizes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    draw_id INTEGER NOT NULL REFERENCES draws (id),
    position INTEGER NOT NULL CHECK (position >= 0),
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    count INTEGER NOT NULL CHECK (count >= 1),
    coupon_id INTEGER REFERENCES coupons (id),
    UNIQUE (draw_id, position)
) STRICT;

CREATE TABLE draw_participants (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    draw_id INTEGER NOT NULL REFERENCES draws (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    joined_at TEXT NOT NULL,
    UNIQUE (draw_id, user_id)
) STRICT;
CREATE INDEX draw_participants_user ON draw_participants (user_id, draw_id);

-- One row per winner: the unique key is the last word on "at most one prize each".
CREATE TABLE draw_winners (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    draw_id INTEGER NOT NULL REFERENCES draws (id),
    user_id INTEGER NOT NULL REFERENCES users (id),
    prize_id INTEGER NOT NULL REFERENCES draw_prizes (id),
    user_coupon_id INTEGER UNIQUE REFERENCES user_coupons (id),
    UNIQUE (draw_id, user_id)
) STRICT;
