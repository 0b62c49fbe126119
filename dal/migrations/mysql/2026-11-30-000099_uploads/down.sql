ALTER TABLE orders DROP COLUMN delivery_photo_url;
ALTER TABLE users DROP COLUMN avatar_url;
DROP TABLE uploads;
