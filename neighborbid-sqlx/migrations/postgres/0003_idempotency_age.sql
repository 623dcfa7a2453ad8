-- Forgetting old idempotency records (`forget_idempotency`) finds them by
-- age. A BRIN index: records arrive in time order, and it costs the keyed
-- bids' inserts next to nothing.
CREATE INDEX idempotency_created ON idempotency USING brin (created_at);
