-- Browsing: an auction's category and item details (fixed at creation),
-- and indexes for the catalogue's filters.
ALTER TABLE auctions
    ADD COLUMN category   TEXT,
    ADD COLUMN attributes JSONB NOT NULL DEFAULT '{}'
                          CHECK (jsonb_typeof(attributes) = 'object');
CREATE INDEX auctions_category ON auctions (category, id);
CREATE INDEX auctions_region ON auctions (region text_pattern_ops);
