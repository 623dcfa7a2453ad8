//! The host's catalogue rules: which categories, regions and item details
//! exist. The router asks before it creates an auction or lists auctions,
//! so a typo in a category or region gets a 400 instead of an empty list.

use neighborbid_core::{AuctionFilter, CreateAuction};

use crate::error::ApiError;
use crate::identity::Actor;

/// Checks listings and browse filters against the host's catalogue. Both
/// methods accept everything by default.
pub trait Catalogue: Send + Sync + 'static {
    /// Checks a new auction before the engine sees it, and may complete
    /// it (a default category, say).
    fn check_listing(&self, seller: &Actor, listing: &mut CreateAuction) -> Result<(), ApiError> {
        let _ = (seller, listing);
        Ok(())
    }

    /// Checks a browse filter (unknown category or region, ...).
    fn check_filter(&self, filter: &AuctionFilter) -> Result<(), ApiError> {
        let _ = filter;
        Ok(())
    }
}

/// Accepts any category, region and item details (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenCatalogue;

impl Catalogue for OpenCatalogue {}
