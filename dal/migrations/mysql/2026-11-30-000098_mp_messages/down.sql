DROP TABLE mp_messages;
