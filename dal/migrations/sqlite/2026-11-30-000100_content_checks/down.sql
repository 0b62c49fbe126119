DROP INDEX content_checks_verdict;
DROP INDEX content_checks_due;
DROP TABLE content_checks;
