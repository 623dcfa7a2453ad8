-- Browsing: an auction's category and item details (fixed at creation),
-- and an index for the catalogue's category filter.
ALTER TABLE auctions ADD COLUMN category TEXT;
ALTER TABLE auctions ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}'
    CHECK (json_valid(attributes) AND json_type(attributes) = 'object');
CREATE INDEX auctions_category ON auctions (category, id);
