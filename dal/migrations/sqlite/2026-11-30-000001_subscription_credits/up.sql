-- Subscribe-message credits get their own name ("notify" is WeChat Pay's callbacks).
ALTER TABLE notify_credits RENAME TO subscription_credits;
