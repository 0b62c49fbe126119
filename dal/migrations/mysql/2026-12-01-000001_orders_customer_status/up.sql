-- A customer's orders in one status: the unpaid-order cap reads at most that many entries
-- of it, however many orders the customer has had, and `?mine=customer&status=` pages it.
CREATE INDEX orders_customer_status ON orders (customer_id, status, id);
