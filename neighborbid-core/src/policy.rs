//! Per-auction policies: how much a bid must beat the price by, a hidden
//! reserve price, how the auction closes, and when buy-now goes away.
//!
//! [`AuctionPolicy::fixed`] is NeighborBid's first version: a fixed bid unit,
//! no reserve, a hard close, and buy-now until bidding reaches its price.

use std::time::Duration;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::error::Rejection;
use crate::money::{Currency, Money};

/// Everything about an auction's rules that its seller chooses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuctionPolicy {
    /// How much a bid must beat the current price by.
    pub increment: Increment,
    /// A hidden minimum: the auction ends unsold unless the highest
    /// maximum reaches it.
    #[serde(default)]
    pub reserve_price: Option<Money>,
    /// Whether late bids extend the auction.
    #[serde(default)]
    pub close: ClosePolicy,
    /// When buy-now goes away.
    #[serde(default)]
    pub buy_now: BuyNowPolicy,
}

impl AuctionPolicy {
    /// Bids rise by `increment`; no reserve, a hard close, and buy-now until
    /// bidding reaches its price.
    pub fn new(increment: Increment) -> AuctionPolicy {
        AuctionPolicy {
            increment,
            reserve_price: None,
            close: ClosePolicy::Hard,
            buy_now: BuyNowPolicy::Always,
        }
    }

    /// A fixed bid unit of `unit`, no reserve, a hard close, buy-now until
    /// bidding reaches its price.
    pub fn fixed(unit: Money) -> AuctionPolicy {
        AuctionPolicy::new(Increment::fixed(unit))
    }

    /// Checks the policy against the currency and returns it normalized
    /// (a percentage rounds to the currency's scale), or why it is invalid.
    pub fn validate(&self, currency: &Currency) -> Result<AuctionPolicy, Rejection> {
        let increment = self.increment.validate(currency)?;
        if let Some(reserve) = self.reserve_price {
            positive(currency, "reserve_price", reserve)?;
        }
        if let ClosePolicy::Soft {
            window_secs,
            extend_by_secs,
            ..
        } = self.close
        {
            if window_secs == 0 || extend_by_secs == 0 {
                return Err(invalid(
                    "a soft close needs a window and an extension of at least 1 s",
                ));
            }
        }
        Ok(AuctionPolicy {
            increment,
            ..self.clone()
        })
    }
}

/// How much a bid must beat the current price by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Increment {
    /// Always the same step (a bid unit).
    Fixed {
        /// The step.
        unit: Money,
    },
    /// A step per price band, like eBay's table.
    Ladder {
        /// Bands by ascending lower bound; the first starts at zero.
        bands: Vec<Band>,
    },
    /// At least `percent` % of the current price, rounded up to the
    /// currency's scale (and never less than its smallest unit).
    Percent {
        /// The percentage, above 0 and at most 100.
        percent: Decimal,
        /// Decimal places the step rounds to; set from the currency when
        /// the auction is created.
        #[serde(default)]
        scale: u32,
    },
}

/// One band of an [`Increment::Ladder`]: from this price up to the next
/// band, bids rise by `step`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Band {
    /// The band's lowest price.
    pub from: Money,
    /// The increment within the band.
    pub step: Money,
}

impl Increment {
    /// Always the same step.
    pub fn fixed(unit: Money) -> Increment {
        Increment::Fixed { unit }
    }

    /// At least `percent` % of the current price (above 0, at most 100),
    /// rounded up to the currency's decimal places, which the engine sets
    /// when the auction is created.
    pub fn percent(percent: Decimal) -> Increment {
        Increment::Percent { percent, scale: 0 }
    }

    /// eBay's increment table (in the currency's major unit): 0.05 below 1,
    /// 0.25 below 5, 0.50 below 25, 1 below 100, 2.50 below 250, 5 below
    /// 500, 10 below 1,000, 25 below 2,500, 50 below 5,000, then 100.
    pub fn ebay_ladder() -> Increment {
        let band = |from: &str, step: &str| Band {
            from: from.parse().expect("a valid amount"),
            step: step.parse().expect("a valid amount"),
        };
        Increment::Ladder {
            bands: vec![
                band("0", "0.05"),
                band("1", "0.25"),
                band("5", "0.50"),
                band("25", "1"),
                band("100", "2.50"),
                band("250", "5"),
                band("500", "10"),
                band("1000", "25"),
                band("2500", "50"),
                band("5000", "100"),
            ],
        }
    }

    /// The step above `price`.
    pub fn step(&self, price: Money) -> Money {
        match self {
            Increment::Fixed { unit } => *unit,
            Increment::Ladder { bands } => bands
                .iter()
                .take_while(|band| band.from <= price)
                .last()
                .or(bands.first())
                .map_or(Money::ZERO, |band| band.step),
            Increment::Percent { percent, scale } => {
                let smallest = Decimal::new(1, *scale);
                let step = (price.amount() * percent / Decimal::ONE_HUNDRED)
                    .round_dp_with_strategy(*scale, RoundingStrategy::AwayFromZero)
                    .max(smallest);
                Money::new(step).unwrap_or(Money::MAX)
            }
        }
    }

    /// `price` plus one step (saturating at [`Money::MAX`]).
    pub fn above(&self, price: Money) -> Money {
        price.checked_add(self.step(price)).unwrap_or(Money::MAX)
    }

    fn validate(&self, currency: &Currency) -> Result<Increment, Rejection> {
        match self {
            Increment::Fixed { unit } => {
                positive(currency, "bid_unit", *unit)?;
                Ok(self.clone())
            }
            Increment::Ladder { bands } => {
                if bands.first().is_none_or(|band| !band.from.is_zero()) {
                    return Err(invalid("a ladder's first band starts at 0"));
                }
                if !bands.windows(2).all(|pair| pair[0].from < pair[1].from) {
                    return Err(invalid("a ladder's bands rise strictly"));
                }
                for band in bands {
                    currency
                        .check(band.from)
                        .map_err(|reason| Rejection::InvalidAmount {
                            field: "ladder band",
                            reason,
                        })?;
                    positive(currency, "ladder step", band.step)?;
                }
                Ok(self.clone())
            }
            Increment::Percent { percent, .. } => {
                if *percent <= Decimal::ZERO || *percent > Decimal::ONE_HUNDRED {
                    return Err(invalid("percent must be above 0 and at most 100"));
                }
                Ok(Increment::Percent {
                    percent: *percent,
                    scale: currency.scale(),
                })
            }
        }
    }
}

fn positive(currency: &Currency, field: &'static str, amount: Money) -> Result<Money, Rejection> {
    currency
        .check_positive(amount)
        .map_err(|reason| Rejection::InvalidAmount { field, reason })
}

fn invalid(reason: &str) -> Rejection {
    Rejection::InvalidAuction {
        reason: reason.to_owned(),
    }
}

/// Whether late bids extend the auction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClosePolicy {
    /// The auction ends at its end time.
    #[default]
    Hard,
    /// A bid that changes the price in the last `window_secs` moves the
    /// end to `now + extend_by_secs` (never earlier), at most
    /// `max_extensions` times.
    Soft {
        /// How close to the end a bid must be to extend.
        window_secs: u32,
        /// The new end, counted from the bid.
        extend_by_secs: u32,
        /// The most extensions.
        max_extensions: u32,
    },
}

impl ClosePolicy {
    /// The window, the extension and the cap, for a soft close.
    pub fn soft(&self) -> Option<(Duration, Duration, u32)> {
        match *self {
            ClosePolicy::Hard => None,
            ClosePolicy::Soft {
                window_secs,
                extend_by_secs,
                max_extensions,
            } => Some((
                Duration::from_secs(window_secs.into()),
                Duration::from_secs(extend_by_secs.into()),
                max_extensions,
            )),
        }
    }
}

/// When buy-now goes away (it is never offered once bidding reaches its
/// price).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuyNowPolicy {
    /// Until bidding reaches the buy-now price.
    #[default]
    Always,
    /// Until the first bid.
    UntilFirstBid,
    /// Until the reserve is met (without a reserve: until the first bid).
    UntilReserveMet,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> Money {
        text.parse().expect("amount")
    }

    #[test]
    fn ladder_steps_by_band() {
        let ladder = Increment::ebay_ladder();
        for (price, step) in [
            ("0", "0.05"),
            ("0.99", "0.05"),
            ("1", "0.25"),
            ("4.99", "0.25"),
            ("24.99", "0.50"),
            ("25", "1"),
            ("99.99", "1"),
            ("100", "2.50"),
            ("999.99", "10"),
            ("4999.99", "50"),
            ("5000", "100"),
            ("1000000", "100"),
        ] {
            assert_eq!(ladder.step(m(price)), m(step), "at {price}");
        }
        // Crossing a boundary: 4.90 + 0.25 = 5.15, whose own step is 0.50.
        assert_eq!(ladder.above(m("4.90")), m("5.15"));
        assert_eq!(ladder.step(m("5.15")), m("0.50"));
    }

    #[test]
    fn percent_rounds_up_to_the_currency_scale() {
        let five = Increment::Percent {
            percent: Decimal::new(5, 0),
            scale: 2,
        };
        assert_eq!(five.step(m("100")), m("5"));
        assert_eq!(five.step(m("10.01")), m("0.51"), "0.5005 rounds up");
        assert_eq!(five.step(m("0.01")), m("0.01"), "never below one cent");
        assert_eq!(five.above(m("33.33")), m("35.00"));
    }

    #[test]
    fn validation_refuses_broken_policies() {
        let currency = Currency::default();
        let with = |increment| AuctionPolicy {
            increment,
            ..AuctionPolicy::fixed(Money::units(1))
        };
        let band = |from: &str, step: &str| Band {
            from: m(from),
            step: m(step),
        };
        let bad = [
            with(Increment::Fixed { unit: Money::ZERO }),
            with(Increment::Fixed { unit: m("0.001") }),
            with(Increment::Ladder { bands: vec![] }),
            with(Increment::Ladder {
                bands: vec![band("1", "1")],
            }),
            with(Increment::Ladder {
                bands: vec![band("0", "1"), band("0", "2")],
            }),
            with(Increment::Ladder {
                bands: vec![band("0", "0")],
            }),
            with(Increment::Percent {
                percent: Decimal::ZERO,
                scale: 2,
            }),
            with(Increment::Percent {
                percent: Decimal::new(101, 0),
                scale: 2,
            }),
            AuctionPolicy {
                reserve_price: Some(Money::ZERO),
                ..AuctionPolicy::fixed(Money::units(1))
            },
            AuctionPolicy {
                close: ClosePolicy::Soft {
                    window_secs: 0,
                    extend_by_secs: 60,
                    max_extensions: 3,
                },
                ..AuctionPolicy::fixed(Money::units(1))
            },
        ];
        for policy in bad {
            assert!(policy.validate(&currency).is_err(), "{policy:?}");
        }
        let percent = with(Increment::Percent {
            percent: Decimal::new(5, 0),
            scale: 9,
        });
        assert_eq!(
            percent.validate(&currency).expect("valid").increment,
            Increment::Percent {
                percent: Decimal::new(5, 0),
                scale: 2
            },
            "the scale comes from the currency"
        );
        assert!(with(Increment::ebay_ladder()).validate(&currency).is_ok());
        let doubling = with(Increment::Percent {
            percent: Decimal::ONE_HUNDRED,
            scale: 2,
        });
        assert!(doubling.validate(&currency).is_ok(), "100% is the most");
    }
}
