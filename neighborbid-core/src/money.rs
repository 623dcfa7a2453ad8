//! Exact amounts of money and the currency rules that validate them.
//!
//! [`Money`] is never negative and never larger than [`Money::MAX`]; a
//! [`Currency`] adds the engine's own limits (decimal places, a smaller
//! maximum per amount), and [`Wallet::LIMIT`](crate::Wallet::LIMIT) bounds
//! what deposits may bring a wallet to. Nothing is ever rounded silently: a bad amount is a typed
//! [`MoneyError`].

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an amount was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The text is not a plain decimal number (`"12"`, `"12.50"`).
    #[error("not a decimal amount")]
    NotANumber,
    /// Amounts are never negative.
    #[error("amount is negative")]
    Negative,
    /// A positive amount is required here.
    #[error("amount must be greater than zero")]
    Zero,
    /// More decimal places than the currency has.
    #[error("amount has more than {max_scale} decimal places")]
    TooPrecise {
        /// Decimal places the currency allows.
        max_scale: u32,
    },
    /// Larger than the currency's (or the absolute) maximum.
    #[error("amount is larger than {max}")]
    TooLarge {
        /// The largest amount accepted.
        max: Money,
    },
}

/// A non-negative, bounded, exact amount of money.
///
/// Serialized as a decimal string (`"12.5"`); deserializing accepts only
/// strings, so amounts never pass through floating point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(Decimal);

impl Money {
    /// Zero.
    pub const ZERO: Money = Money(Decimal::ZERO);
    /// The absolute upper bound of any amount, 10^18: a thousand times
    /// [`Wallet::LIMIT`](crate::Wallet::LIMIT), so that money moving between
    /// wallets (a sale paying a seller whose deposits filled their wallet)
    /// is never refused, and far enough below `Decimal`'s 28 digits that
    /// sums at [`Currency::MAX_SCALE`] decimal places stay exact.
    pub const MAX: Money = Money(Decimal::from_parts(0xA764_0000, 0x0DE0_B6B3, 0, false, 0));
    /// The most characters [`Money::from_str`] reads; longer input is refused
    /// before parsing.
    const MAX_TEXT: usize = 40;

    /// Validates a decimal: not negative, not above [`Money::MAX`].
    /// Trailing zeros are dropped (`1.50` becomes `1.5`).
    pub fn new(amount: Decimal) -> Result<Money, MoneyError> {
        if amount.is_zero() {
            return Ok(Money::ZERO);
        }
        if amount.is_sign_negative() {
            return Err(MoneyError::Negative);
        }
        if amount > Money::MAX.0 {
            return Err(MoneyError::TooLarge { max: Money::MAX });
        }
        Ok(Money(amount.normalize()))
    }

    /// A whole number of currency units; panics above [`Money::MAX`] (for
    /// literals in tests and examples).
    pub fn units(units: u64) -> Money {
        Money::new(Decimal::from(units)).expect("amount above Money::MAX")
    }

    /// A whole number of units for constants (at most [`Money::MAX`]).
    pub(crate) const fn const_units(units: u64) -> Money {
        Money(Decimal::from_parts(
            units as u32,
            (units >> 32) as u32,
            0,
            false,
            0,
        ))
    }

    /// The exact decimal value.
    pub fn amount(self) -> Decimal {
        self.0
    }

    /// Whether this is zero.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// The sum, or `None` above [`Money::MAX`].
    pub fn checked_add(self, other: Money) -> Option<Money> {
        Money::new(self.0 + other.0).ok()
    }

    /// The difference, or `None` when it would be negative.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        Money::new(self.0 - other.0).ok()
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    /// Parses a plain decimal: digits, optionally a point and more digits.
    /// No sign (a leading `-` is reported as [`MoneyError::Negative`]), no
    /// exponent, no spaces, no thousands separators.
    fn from_str(text: &str) -> Result<Money, MoneyError> {
        let digits = match text.strip_prefix('-') {
            Some(rest) => {
                // "-0" is zero and therefore fine; anything else negative is not.
                if is_plain_decimal(rest) && rest.bytes().all(|b| b == b'0' || b == b'.') {
                    return Ok(Money::ZERO);
                }
                return Err(if is_plain_decimal(rest) {
                    MoneyError::Negative
                } else {
                    MoneyError::NotANumber
                });
            }
            None => text,
        };
        if !is_plain_decimal(digits) {
            return Err(MoneyError::NotANumber);
        }
        let integer_digits = digits
            .split('.')
            .next()
            .unwrap_or("")
            .trim_start_matches('0');
        if digits.len() > Money::MAX_TEXT || integer_digits.len() > 19 {
            return Err(MoneyError::TooLarge { max: Money::MAX });
        }
        let value = Decimal::from_str_exact(digits).map_err(|_| MoneyError::TooPrecise {
            max_scale: Decimal::MAX_SCALE,
        })?;
        Money::new(value)
    }
}

fn is_plain_decimal(text: &str) -> bool {
    let mut parts = text.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let fraction = parts.next();
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    !whole.is_empty()
        && all_digits(whole)
        && fraction.is_none_or(|f| !f.is_empty() && all_digits(f))
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Money, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The amount rules of the engine's currency, and optionally its ISO 4217
/// code for display.
///
/// The default has 2 decimal places, a maximum of 10^12 per amount and no
/// code. For a currency without minor units, such as the won:
///
/// ```
/// use neighborbid_core::{Currency, CurrencyCode, Money};
///
/// let krw = CurrencyCode::new("KRW").expect("three capital letters");
/// let won = Currency::new(0, Money::units(1_000_000_000)).with_code(krw);
/// assert_eq!(won.format(Money::units(1_250_000)), "1,250,000 KRW");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Currency {
    scale: u32,
    max: Money,
    code: Option<CurrencyCode>,
}

impl Default for Currency {
    fn default() -> Self {
        Currency {
            scale: 2,
            max: Money::units(1_000_000_000_000),
            code: None,
        }
    }
}

/// A currency's three-letter ISO 4217 code, such as `KRW`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CurrencyCode([u8; 3]);

impl CurrencyCode {
    /// The code, if `code` is three ASCII capital letters.
    pub fn new(code: &str) -> Option<CurrencyCode> {
        let bytes: [u8; 3] = code.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(u8::is_ascii_uppercase)
            .then_some(CurrencyCode(bytes))
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Three ASCII capitals, checked in `new`.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Display for CurrencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Currency {
    /// The most decimal places a currency may have: amounts up to
    /// [`Money::MAX`] at this scale still fit `Decimal`'s 28 digits, so no
    /// sum of wallet money is ever rounded.
    pub const MAX_SCALE: u32 = 10;

    /// A currency with `scale` decimal places (at most
    /// [`MAX_SCALE`](Self::MAX_SCALE)) whose amounts may not exceed `max`.
    pub fn new(scale: u32, max: Money) -> Currency {
        Currency {
            scale: scale.min(Self::MAX_SCALE),
            max,
            code: None,
        }
    }

    /// The same rules, displayed with `code`.
    pub fn with_code(self, code: CurrencyCode) -> Currency {
        Currency {
            code: Some(code),
            ..self
        }
    }

    /// The currency's code, if it has one.
    pub fn code(&self) -> Option<CurrencyCode> {
        self.code
    }

    /// `amount` for people to read: every decimal place of the currency,
    /// thousands separated by commas, then the code if there is one
    /// (`1,234.50 USD`, `1,250,000 KRW`, `1,234.50`). Amounts on the wire
    /// stay plain decimal strings.
    pub fn format(&self, amount: Money) -> String {
        let text = format!("{:.*}", self.scale as usize, amount.amount());
        let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
        let mut grouped = String::with_capacity(text.len() + whole.len() / 3 + 4);
        for (index, digit) in whole.chars().enumerate() {
            if index > 0 && (whole.len() - index) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        if !fraction.is_empty() {
            grouped.push('.');
            grouped.push_str(fraction);
        }
        if let Some(code) = self.code {
            grouped.push(' ');
            grouped.push_str(code.as_str());
        }
        grouped
    }

    /// Decimal places an amount may have.
    pub fn scale(&self) -> u32 {
        self.scale
    }

    /// The largest single amount.
    pub fn max(&self) -> Money {
        self.max
    }

    /// Checks an amount against the currency: scale and maximum. Zero passes.
    pub fn check(&self, amount: Money) -> Result<Money, MoneyError> {
        if amount.0.scale() > self.scale {
            return Err(MoneyError::TooPrecise {
                max_scale: self.scale,
            });
        }
        if amount > self.max {
            return Err(MoneyError::TooLarge { max: self.max });
        }
        Ok(amount)
    }

    /// Like [`Currency::check`], and the amount must be greater than zero.
    pub fn check_positive(&self, amount: Money) -> Result<Money, MoneyError> {
        if amount.is_zero() {
            return Err(MoneyError::Zero);
        }
        self.check(amount)
    }

    /// Parses text and checks it against the currency.
    pub fn parse(&self, text: &str) -> Result<Money, MoneyError> {
        self.check(text.parse()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(text: &str) -> Money {
        text.parse().unwrap()
    }

    #[test]
    fn max_is_ten_to_the_eighteenth() {
        assert_eq!(
            Money::MAX.amount(),
            Decimal::from(1_000_000_000_000_000_000u64)
        );
    }

    #[test]
    fn sums_up_to_the_maximum_at_the_largest_scale_are_exact() {
        let tiny = Money::new(Decimal::new(1, Currency::MAX_SCALE)).unwrap();
        let almost = Money::MAX.checked_sub(tiny).unwrap();
        assert_eq!(almost.checked_add(tiny), Some(Money::MAX));
        assert_eq!(almost.amount().scale(), Currency::MAX_SCALE);
        assert_eq!(Currency::new(28, Money::MAX).scale(), Currency::MAX_SCALE);
    }

    #[test]
    fn parses_plain_decimals_and_normalizes() {
        assert_eq!(money("12"), Money::units(12));
        assert_eq!(money("12.50").to_string(), "12.5");
        assert_eq!(money("0"), Money::ZERO);
        assert_eq!(money("-0.00"), Money::ZERO);
        assert_eq!(money("000123.4500").to_string(), "123.45");
    }

    #[test]
    fn rejects_what_is_not_a_plain_decimal() {
        for bad in [
            "", " 1", "1 ", "+1", "1e5", "1.", ".5", "1,000", "NaN", "inf", "0x10", "1.2.3", "--1",
            "١٢",
        ] {
            assert_eq!(bad.parse::<Money>(), Err(MoneyError::NotANumber), "{bad:?}");
        }
    }

    #[test]
    fn rejects_negative_and_huge() {
        assert_eq!("-1".parse::<Money>(), Err(MoneyError::Negative));
        assert_eq!("-0.01".parse::<Money>(), Err(MoneyError::Negative));
        let too_large = Err(MoneyError::TooLarge { max: Money::MAX });
        assert_eq!("1000000000000000000.01".parse::<Money>(), too_large);
        assert_eq!(
            "99999999999999999999999999999999".parse::<Money>(),
            too_large
        );
        assert_eq!(format!("1{}", "0".repeat(100)).parse::<Money>(), too_large);
        assert_eq!("1000000000000000000".parse::<Money>(), Ok(Money::MAX));
        // The length limit counts the whole text, leading zeros too.
        let longest = format!("{}1", "0".repeat(Money::MAX_TEXT - 1));
        assert_eq!(longest.parse::<Money>(), Ok(Money::units(1)));
        assert_eq!(format!("0{longest}").parse::<Money>(), too_large);
        assert_eq!(Money::new(Decimal::NEGATIVE_ONE), Err(MoneyError::Negative));
        assert_eq!(Money::new(Decimal::MAX), too_large);
    }

    #[test]
    fn too_many_decimal_places_for_decimal_is_too_precise() {
        let text = format!("0.{}1", "0".repeat(30));
        assert!(matches!(
            text.parse::<Money>(),
            Err(MoneyError::TooPrecise { .. })
        ));
    }

    #[test]
    fn currency_checks_scale_zero_and_max() {
        let won = Currency::new(0, Money::units(1_000_000_000));
        assert_eq!(won.parse("10000"), Ok(Money::units(10_000)));
        assert_eq!(won.parse("10000.00"), Ok(Money::units(10_000)));
        assert_eq!(
            won.parse("10000.5"),
            Err(MoneyError::TooPrecise { max_scale: 0 })
        );
        assert_eq!(
            won.parse("1000000001"),
            Err(MoneyError::TooLarge {
                max: Money::units(1_000_000_000)
            })
        );
        assert_eq!(won.max(), Money::units(1_000_000_000));
        assert_eq!(won.parse("1000000000"), Ok(won.max()), "the maximum itself");
        assert_eq!(won.check_positive(Money::ZERO), Err(MoneyError::Zero));
        let cents = Currency::default();
        assert_eq!(cents.parse("0.05"), Ok(money("0.05")));
        assert_eq!(
            cents.parse("0.005"),
            Err(MoneyError::TooPrecise { max_scale: 2 })
        );
    }

    #[test]
    fn amounts_are_formatted_for_people_in_the_currency() {
        let won = Currency::new(0, Money::MAX).with_code(CurrencyCode::new("KRW").unwrap());
        assert_eq!(won.format(Money::ZERO), "0 KRW");
        assert_eq!(won.format(money("999")), "999 KRW");
        assert_eq!(won.format(money("1000")), "1,000 KRW");
        assert_eq!(won.format(money("1250000")), "1,250,000 KRW");
        let dollars = Currency::default().with_code(CurrencyCode::new("USD").unwrap());
        assert_eq!(dollars.format(money("1234.5")), "1,234.50 USD");
        assert_eq!(dollars.format(money("0.05")), "0.05 USD");
        assert_eq!(Currency::default().format(money("100000")), "100,000.00");
        assert_eq!(
            dollars.code().map(|code| code.to_string()),
            Some("USD".into())
        );
        for bad in ["krw", "KR", "KRWW", "K1W", "원원원"] {
            assert_eq!(CurrencyCode::new(bad), None, "{bad}");
        }
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Money::units(5).checked_sub(Money::units(6)), None);
        assert_eq!(
            Money::units(5).checked_sub(Money::units(5)),
            Some(Money::ZERO)
        );
        assert_eq!(Money::MAX.checked_add(money("0.01")), None);
        assert_eq!(money("0.1").checked_add(money("0.2")), Some(money("0.3")));
    }

    #[test]
    fn serde_uses_strings_only() {
        assert_eq!(serde_json::to_string(&money("12.5")).unwrap(), "\"12.5\"");
        assert_eq!(
            serde_json::from_str::<Money>("\"7.25\"").unwrap(),
            money("7.25")
        );
        assert!(serde_json::from_str::<Money>("7.25").is_err());
        assert!(serde_json::from_str::<Money>("\"-1\"").is_err());
    }
}
