-- A refund WeChat answered with CHANGE (refund to a closed card) keeps its amount
-- reserved and waits for a person: status 'manual'. An admin refund records who asked.
ALTER TABLE refunds DROP CONSTRAINT refunds_status;
ALTER TABLE refunds ADD CONSTRAINT refunds_status
    CHECK (status IN ('requested', 'processing', 'success', 'failed', 'manual'));
ALTER TABLE refunds ADD COLUMN requested_by BIGINT NULL;
ALTER TABLE refunds ADD CONSTRAINT refunds_requested_by FOREIGN KEY (requested_by) REFERENCES users (id);
