DROP INDEX orders_customer_status ON orders;
