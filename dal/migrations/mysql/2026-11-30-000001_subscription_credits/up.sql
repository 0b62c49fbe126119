-- Subscribe-message credits get their own name ("notify" is WeChat Pay's callbacks).
RENAME TABLE notify_credits TO subscription_credits;
