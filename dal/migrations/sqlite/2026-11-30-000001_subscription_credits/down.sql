ALTER TABLE subscription_credits RENAME TO notify_credits;
