-- Who granted a user's role through the admin API; NULL when it came from ADMIN_OPENIDS,
-- a runner approval or the default. Only a config-derived admin role follows ADMIN_OPENIDS.
ALTER TABLE users ADD COLUMN role_granted_by INTEGER;
