-- Forgetting old idempotency records (`forget_idempotency`) finds them by
-- age.
CREATE INDEX idempotency_created ON idempotency (created_at);
