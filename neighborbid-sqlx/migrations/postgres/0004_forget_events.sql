-- Forgetting a closed auction's events (`forget_events`): an outbox row may
-- now be deleted once its auction is closed, and still never before.
CREATE OR REPLACE FUNCTION neighborbid_outbox_delivery_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF EXISTS (SELECT 1 FROM auctions WHERE id = OLD.auction_id AND closed_at IS NOT NULL) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'only a closed auction''s outbox rows may be deleted'
            USING ERRCODE = 'restrict_violation';
    END IF;
    IF NEW.auction_id <> OLD.auction_id OR NEW.seq <> OLD.seq
       OR NEW.at <> OLD.at OR NEW.payload <> OLD.payload THEN
        RAISE EXCEPTION 'outbox rows only gain a delivery time'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$;
