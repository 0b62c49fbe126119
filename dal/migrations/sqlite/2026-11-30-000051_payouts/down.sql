DROP TABLE reconciliations;
DROP TABLE withdrawals;
DROP TABLE earnings;
