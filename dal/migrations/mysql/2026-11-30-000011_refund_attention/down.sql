ALTER TABLE refunds DROP FOREIGN KEY refunds_requested_by;
ALTER TABLE refunds DROP COLUMN requested_by;
UPDATE refunds SET status = 'processing' WHERE status = 'manual';
ALTER TABLE refunds DROP CONSTRAINT refunds_status;
ALTER TABLE refunds ADD CONSTRAINT refunds_status
    CHECK (status IN ('requested', 'processing', 'success', 'failed'));
