DROP TABLE idempotency_keys;
DROP TABLE bind_codes;
DROP TABLE users;
