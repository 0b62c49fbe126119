ALTER TABLE orders DROP COLUMN delivery_photo_url;
ALTER TABLE users DROP COLUMN avatar_url;
DROP INDEX uploads_to_submit;
DROP TABLE uploads;
