//! Money (issue 23's groundwork): amounts are decimals (`rust_decimal`), never floats, each in
//! one currency; amounts of different currencies are never added together.
//!
//! Vendors state money in different ways, and each is read from its text so that nothing is
//! rounded on the way in: OpenAI's costs give major units as a JSON **number**
//! (`{"value": 0.06, "currency": "usd"}`: read the number's text, not an `f64`), Anthropic's
//! cost report minor units as a decimal **string** (`"123.78912"` cents, i.e. $1.2378912).
//! Answers show amounts as decimal strings with [`DISPLAY_SCALE`] places.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

/// Decimal places of amounts shown in answers (`"12.3400"`): enough for per-token prices summed
/// over few tokens; amounts are added unrounded and rounded once, when shown.
pub const DISPLAY_SCALE: u32 = 4;

/// An ISO 4217 alphabetic currency code (`USD`), kept upper case.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// US dollars.
    pub const USD: Self = Self(*b"USD");

    /// Parses a code in any case (`usd`, as OpenAI sends it, is `USD`): three ASCII letters.
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let b = code.trim().as_bytes();
        match b {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_alphabetic()) => Ok(Self([
                a.to_ascii_uppercase(),
                b.to_ascii_uppercase(),
                c.to_ascii_uppercase(),
            ])),
            _ => Err(MoneyError(format!(
                "`{code}` is not a currency code (three letters, e.g. `USD`)"
            ))),
        }
    }

    /// The code (`USD`).
    pub fn as_str(&self) -> &str {
        // Three ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

/// Why an amount or a currency could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MoneyError(String);

/// An amount in one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    /// The amount, in major units (dollars), unrounded.
    pub amount: Decimal,
    /// Its currency.
    pub currency: Currency,
}

impl Money {
    /// An amount given in major units as decimal text — a JSON number's text as the vendor sent
    /// it (`0.06`, `1.2e-5`) or a decimal string — read exactly.
    pub fn from_major(text: &str, currency: Currency) -> Result<Self, MoneyError> {
        Ok(Self {
            amount: parse_decimal(text)?,
            currency,
        })
    }

    /// An amount given in minor units (cents) as decimal text, as Anthropic's cost report does
    /// (`"123.78912"` is $1.2378912); `minor_digits` is the currency's (2 for USD).
    pub fn from_minor(
        text: &str,
        currency: Currency,
        minor_digits: u32,
    ) -> Result<Self, MoneyError> {
        let minor = parse_decimal(text)?;
        let unit = Decimal::from(10u64.pow(minor_digits.min(18)));
        let amount = minor
            .checked_div(unit)
            .ok_or_else(|| MoneyError(format!("`{text}` cannot be divided into major units")))?;
        Ok(Self { amount, currency })
    }

    /// The amount as answers show it: [`DISPLAY_SCALE`] places, rounded half away from zero
    /// (`0.00005` → `"0.0001"`).
    pub fn display_amount(&self) -> String {
        show(self.amount)
    }
}

impl Serialize for Money {
    /// `{"amount": "12.3400", "currency": "USD"}`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("Money", 2)?;
        m.serialize_field("amount", &self.display_amount())?;
        m.serialize_field("currency", self.currency.as_str())?;
        m.end()
    }
}

/// Shows an amount with [`DISPLAY_SCALE`] places, rounded half away from zero.
fn show(amount: Decimal) -> String {
    let mut d =
        amount.round_dp_with_strategy(DISPLAY_SCALE, RoundingStrategy::MidpointAwayFromZero);
    d.rescale(DISPLAY_SCALE);
    d.to_string()
}

/// Reads decimal text exactly: plain (`0.06`) or scientific (`6e-2`), refusing what a decimal
/// of 28 digits cannot hold rather than rounding it.
fn parse_decimal(text: &str) -> Result<Decimal, MoneyError> {
    let t = text.trim();
    let parsed = if t.contains(['e', 'E']) {
        Decimal::from_scientific(t)
    } else {
        Decimal::from_str_exact(t)
    };
    parsed.map_err(|e| MoneyError(format!("`{t}` is not an exact decimal amount: {e}")))
}

/// Amounts added up per currency, never across currencies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Costs(BTreeMap<Currency, Decimal>);

impl Costs {
    /// Adds an amount to its currency's sum; `None` when the sum would overflow (then nothing
    /// is added).
    pub fn add(&mut self, m: Money) -> Option<()> {
        let sum = self.0.entry(m.currency).or_insert(Decimal::ZERO);
        *sum = sum.checked_add(m.amount)?;
        Some(())
    }

    /// Adds every sum of `other`.
    pub fn merge(&mut self, other: &Costs) -> Option<()> {
        for m in other.iter() {
            self.add(m)?;
        }
        Some(())
    }

    /// The sums, one per currency, in currency order.
    pub fn iter(&self) -> impl Iterator<Item = Money> + '_ {
        self.0.iter().map(|(currency, amount)| Money {
            amount: *amount,
            currency: *currency,
        })
    }

    /// Reports whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    #[test]
    fn currencies_are_three_letters_upper_case() {
        assert_eq!(Currency::parse("usd").unwrap(), Currency::USD);
        assert_eq!(Currency::parse(" EUR ").unwrap().as_str(), "EUR");
        for bad in ["", "US", "USDX", "U$D", "€€€"] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn openai_dollars_are_read_from_the_numbers_text_exactly() {
        // 0.1 + 0.2 as floats is 0.30000000000000004; as decimals 0.3.
        let a = Money::from_major("0.1", Currency::USD).unwrap();
        let b = Money::from_major("0.2", Currency::USD).unwrap();
        let mut c = Costs::default();
        c.add(a).unwrap();
        c.add(b).unwrap();
        assert_eq!(c.iter().next().unwrap().amount, d("0.3"));
        assert_eq!(
            Money::from_major("6e-2", Currency::USD).unwrap().amount,
            d("0.06")
        );
        assert_eq!(
            Money::from_major("1.23456789012345678901", Currency::USD)
                .unwrap()
                .amount,
            d("1.23456789012345678901")
        );
        assert!(Money::from_major("0.06.1", Currency::USD).is_err());
        assert!(Money::from_major("NaN", Currency::USD).is_err());
    }

    #[test]
    fn anthropic_cents_become_dollars_keeping_fractional_cents() {
        let m = Money::from_minor("123.78912", Currency::USD, 2).unwrap();
        assert_eq!(m.amount, d("1.2378912"));
        assert_eq!(m.display_amount(), "1.2379");
        assert_eq!(
            Money::from_minor("8342.1050", Currency::USD, 2)
                .unwrap()
                .display_amount(),
            "83.4211"
        );
        assert_eq!(
            Money::from_minor("0", Currency::USD, 2)
                .unwrap()
                .display_amount(),
            "0.0000"
        );
    }

    #[test]
    fn amounts_show_four_places_rounded_half_away_from_zero() {
        let show = |s: &str| {
            Money::from_major(s, Currency::USD)
                .unwrap()
                .display_amount()
        };
        assert_eq!(show("12.34"), "12.3400");
        assert_eq!(show("0.00005"), "0.0001");
        assert_eq!(show("0.000049"), "0.0000");
        assert_eq!(show("-0.00005"), "-0.0001");
        assert_eq!(show("2.00015"), "2.0002");
        let json =
            serde_json::to_string(&Money::from_major("12.34", Currency::USD).unwrap()).unwrap();
        assert_eq!(json, r#"{"amount":"12.3400","currency":"USD"}"#);
    }

    #[test]
    fn sums_stay_per_currency() {
        let mut c = Costs::default();
        c.add(Money::from_major("1.5", Currency::USD).unwrap())
            .unwrap();
        c.add(Money::from_major("2", Currency::parse("EUR").unwrap()).unwrap())
            .unwrap();
        c.add(Money::from_major("0.25", Currency::USD).unwrap())
            .unwrap();
        let shown: Vec<(String, String)> = c
            .iter()
            .map(|m| (m.currency.to_string(), m.display_amount()))
            .collect();
        assert_eq!(
            shown,
            [
                ("EUR".into(), "2.0000".into()),
                ("USD".into(), "1.7500".into())
            ]
        );
        let mut big = Costs::default();
        big.add(Money {
            amount: Decimal::MAX,
            currency: Currency::USD,
        })
        .unwrap();
        assert!(
            big.add(Money {
                amount: Decimal::MAX,
                currency: Currency::USD
            })
            .is_none()
        );
    }
}
