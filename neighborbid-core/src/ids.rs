//! Identifiers. Stores assign auction and bid ids; user ids come from the
//! host application (a user's id is also the id of their wallet).

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

id_type!(
    /// An auction. Assigned by the store when the auction is created.
    AuctionId
);
id_type!(
    /// A user of the host application, and their wallet.
    UserId
);
id_type!(
    /// A bid. Assigned by the store when the bid is recorded.
    BidId
);

impl AuctionId {
    /// Placeholder of an auction the store has not inserted yet.
    pub const UNASSIGNED: AuctionId = AuctionId(0);
}

impl BidId {
    /// Placeholder of a bid the store has not inserted yet.
    pub const UNASSIGNED: BidId = BidId(0);
}
