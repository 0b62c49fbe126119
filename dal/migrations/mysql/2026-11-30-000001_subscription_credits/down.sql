RENAME TABLE subscription_credits TO notify_credits;
