//! An auction's row, once for both databases: the columns read back, the
//! row a new auction inserts, and the bidding state every later change
//! rewrites (a bid never rewrites the listing).
//!
//! A new listing column touches this file (its read, its bind in
//! [`impl_auction_rows!`]), the `Listing` type in core and a migration per
//! database: see "A new listing field" in `docs/architecture.md`.

use neighborbid_core::{
    Attributes, Auction, AuctionId, AuctionPolicy, AuctionStatus, Bidding, Listing, Region, Scope,
    StoreError, UserId,
};
use sqlx::types::Json;

use super::{corrupt, count, Amount, Instant};

/// The columns of `auctions` that [`AuctionRow`] reads, as a literal for
/// `concat!`.
macro_rules! auction_columns {
    () => {
        concat!(
            "id, ",
            crate::codec::auction::listing_columns!(),
            ", starts_at, created_at, ",
            crate::codec::auction::bidding_columns!()
        )
    };
}
pub(crate) use auction_columns;

/// The listing's columns, in the order `push_listing` binds them.
macro_rules! listing_columns {
    () => {
        "seller, title, description, category, attributes, scope, region, start_price, policy, \
         buy_now_price"
    };
}
pub(crate) use listing_columns;

/// The bidding state's columns, in the order `push_bidding` binds them.
macro_rules! bidding_columns {
    () => {
        "ends_at, status, current_price, leader, max_bid, reserve_met, extensions, bid_count, \
         seq, closed_at"
    };
}
pub(crate) use bidding_columns;

/// A row of `auctions` in a backend's amount (`M`) and time (`T`) types.
#[derive(sqlx::FromRow)]
pub(crate) struct AuctionRow<M, T> {
    id: i64,
    seller: i64,
    title: String,
    description: String,
    category: Option<String>,
    attributes: Json<Attributes>,
    scope: String,
    region: Option<String>,
    start_price: M,
    policy: Json<AuctionPolicy>,
    buy_now_price: Option<M>,
    starts_at: T,
    created_at: T,
    ends_at: T,
    status: String,
    current_price: M,
    leader: Option<i64>,
    max_bid: Option<M>,
    reserve_met: bool,
    extensions: i64,
    bid_count: i64,
    seq: i64,
    closed_at: Option<T>,
}

impl<M: Amount, T: Instant> AuctionRow<M, T> {
    pub(crate) fn into_auction(self) -> Result<Auction, StoreError> {
        let scope = match (self.scope.as_str(), self.region) {
            ("national", None) => Scope::National,
            ("local", Some(region)) => Scope::Local {
                region: Region(region),
            },
            (scope, region) => {
                return Err(corrupt(format!("scope {scope:?} with region {region:?}")))
            }
        };
        Ok(Auction {
            id: AuctionId(self.id),
            listing: Listing {
                seller: UserId(self.seller),
                title: self.title,
                description: self.description,
                category: self.category,
                attributes: self.attributes.0,
                scope,
                start_price: self.start_price.into_money()?,
                policy: self.policy.0,
                buy_now_price: self.buy_now_price.map(Amount::into_money).transpose()?,
            },
            starts_at: self.starts_at.into_timestamp()?,
            created_at: self.created_at.into_timestamp()?,
            bidding: Bidding {
                ends_at: self.ends_at.into_timestamp()?,
                status: self
                    .status
                    .parse::<AuctionStatus>()
                    .map_err(|error| corrupt(error.to_string()))?,
                current_price: self.current_price.into_money()?,
                leader: self.leader.map(UserId),
                max_bid: self.max_bid.map(Amount::into_money).transpose()?,
                reserve_met: self.reserve_met,
                extensions: count(self.extensions, "extensions")?,
                bid_count: count(self.bid_count, "bid_count")?,
                seq: count(self.seq, "seq")?,
                closed_at: self.closed_at.map(Instant::into_timestamp).transpose()?,
            },
        })
    }
}

/// The scope of an auction as its two columns.
pub(crate) fn scope_columns(scope: &Scope) -> (&'static str, Option<String>) {
    match scope {
        Scope::National => ("national", None),
        Scope::Local { region } => ("local", Some(region.as_str().to_owned())),
    }
}

/// Implements, for the transaction type `$tx` on database `$db`, the
/// writes of an auction's row: `insert_auction_row` (a new auction) and
/// `push_bidding_update` (the `UPDATE` of its bidding state, which
/// Postgres's batch statement embeds). `$amount` and `$time` encode an
/// amount and a time as the database stores them.
macro_rules! impl_auction_rows {
    ($tx:ty, $db:ty, amount: $amount:path, time: $time:path) => {
        /// Binds a listing's columns in the order of `listing_columns!()`.
        fn push_listing(
            values: &mut crate::statement::List<'_, '_, $db>,
            listing: &neighborbid_core::Listing,
        ) {
            let (scope, region) = crate::codec::auction::scope_columns(&listing.scope);
            values
                .bind(listing.seller.0)
                .bind(listing.title.clone())
                .bind(listing.description.clone())
                .bind(listing.category.clone())
                .bind(sqlx::types::Json(listing.attributes.clone()))
                .bind(scope)
                .bind(region)
                .bind($amount(listing.start_price))
                .bind(sqlx::types::Json(listing.policy.clone()))
                .bind(listing.buy_now_price.map($amount));
        }

        /// Binds a bidding state's columns in the order of
        /// `bidding_columns!()`.
        fn push_bidding(
            values: &mut crate::statement::List<'_, '_, $db>,
            bidding: &neighborbid_core::Bidding,
        ) -> Result<(), neighborbid_core::StoreError> {
            let seq = crate::codec::to_i64(bidding.seq, "seq")?;
            values
                .bind($time(bidding.ends_at))
                .bind(bidding.status.as_str())
                .bind($amount(bidding.current_price))
                .bind(bidding.leader.map(|leader| leader.0))
                .bind(bidding.max_bid.map($amount))
                .bind(bidding.reserve_met)
                .bind(i64::from(bidding.extensions))
                .bind(i64::from(bidding.bid_count))
                .bind(seq)
                .bind(bidding.closed_at.map($time));
            Ok(())
        }

        /// Pushes the `UPDATE` of `auction`'s bidding state: all that a
        /// change of an auction writes to its row.
        fn push_bidding_update(
            statement: &mut crate::statement::Statement<'_, $db>,
            auction: &neighborbid_core::Auction,
        ) -> Result<(), neighborbid_core::StoreError> {
            statement.push(concat!(
                "UPDATE auctions SET (",
                crate::codec::auction::bidding_columns!(),
                ") = ("
            ));
            push_bidding(&mut statement.list(), &auction.bidding)?;
            statement.push(") WHERE id = ").bind(auction.id.0);
            Ok(())
        }

        impl $tx {
            /// Inserts a new auction's row; the auction with its new id.
            async fn insert_auction_row(
                &mut self,
                auction: &neighborbid_core::Auction,
            ) -> Result<neighborbid_core::Auction, neighborbid_core::StoreError> {
                let mut statement = crate::statement::Statement::<$db>::new(concat!(
                    "INSERT INTO auctions (",
                    crate::codec::auction::listing_columns!(),
                    ", starts_at, created_at, ",
                    crate::codec::auction::bidding_columns!(),
                    ") VALUES ("
                ));
                let mut values = statement.list();
                push_listing(&mut values, &auction.listing);
                values
                    .bind($time(auction.starts_at))
                    .bind($time(auction.created_at));
                push_bidding(&mut values, &auction.bidding)?;
                statement.push(") RETURNING id");
                let (sql, arguments) = statement.finish()?;
                let id: i64 = sqlx::query_scalar_with(&sql, arguments)
                    .fetch_one(&mut *self.tx)
                    .await
                    .map_err(self.error())?;
                Ok(neighborbid_core::Auction {
                    id: neighborbid_core::AuctionId(id),
                    ..auction.clone()
                })
            }
        }
    };
}
pub(crate) use impl_auction_rows;
