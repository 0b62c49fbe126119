DROP TABLE pay_notifications;
DROP TABLE payment_events;
DROP TABLE refunds;
DROP TABLE orders;
