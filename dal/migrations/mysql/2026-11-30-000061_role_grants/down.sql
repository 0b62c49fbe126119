ALTER TABLE users DROP COLUMN role_granted_by;
