-- An official-account message over the user's daily cap is recorded, not sent: 'capped'.
ALTER TABLE mp_messages DROP CONSTRAINT mp_messages_status;
ALTER TABLE mp_messages ADD CONSTRAINT mp_messages_status
    CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'gave_up', 'unclear', 'capped'));
