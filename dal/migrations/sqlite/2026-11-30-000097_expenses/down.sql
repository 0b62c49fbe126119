DROP TABLE expenses;
DROP TABLE reimbursements;
DROP TABLE group_members;
DROP TABLE expense_groups;
