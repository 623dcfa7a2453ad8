-- Forgetting a closed auction's events (`forget_events`): an outbox row may
-- now be deleted once its auction is closed, and still never before.
DROP TRIGGER outbox_no_delete;
CREATE TRIGGER outbox_no_delete_while_open BEFORE DELETE ON outbox
WHEN (SELECT closed_at FROM auctions WHERE id = OLD.auction_id) IS NULL
BEGIN SELECT RAISE(ABORT, 'only a closed auction''s outbox rows may be deleted'); END;
