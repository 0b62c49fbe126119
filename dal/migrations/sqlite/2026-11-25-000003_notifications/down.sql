DROP TABLE message_log;
DROP TABLE notify_credits;
