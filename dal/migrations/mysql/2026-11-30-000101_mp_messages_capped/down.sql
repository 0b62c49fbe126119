UPDATE mp_messages SET status = 'failed' WHERE status = 'capped';
ALTER TABLE mp_messages DROP CONSTRAINT mp_messages_status;
ALTER TABLE mp_messages ADD CONSTRAINT mp_messages_status
    CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'gave_up', 'unclear'));
