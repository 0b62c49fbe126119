DROP TABLE content_checks;
