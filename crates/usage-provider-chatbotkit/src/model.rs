//! ChatBotKit wire types, exactly as loose as the vendor: every field is optional so that an
//! absent or `null` field never fails a whole page; the mapping code decides what is usable.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// A string as sent, borrowed from the body when it holds no escapes (nearly always), so that
/// reading a page allocates only for what the provider keeps.
///
/// `Option<Cow<str>>` would always copy: serde borrows only a bare `Cow` field.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Text<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

impl Text<'_> {
    /// The string.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A JSON number as ChatBotKit may send it: integer, float or numeric string.
///
/// Read by a visitor rather than `#[serde(untagged)]`, which buffers every value and tries each
/// variant in turn: two of these per usage record made up most of a page's decoding time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Num {
    /// A non-negative integer.
    U(u64),
    /// A negative integer.
    I(i64),
    /// A float.
    F(f64),
    /// A string holding a number.
    S(String),
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number or a numeric string")
            }
            fn visit_u64<E>(self, n: u64) -> Result<Num, E> {
                Ok(Num::U(n))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Num, E> {
                // serde_json hands non-negative integers to `visit_u64`; other formats may not.
                Ok(u64::try_from(n).map_or(Num::I(n), Num::U))
            }
            fn visit_f64<E>(self, f: f64) -> Result<Num, E> {
                Ok(Num::F(f))
            }
            fn visit_str<E>(self, s: &str) -> Result<Num, E> {
                Ok(Num::S(s.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

impl Num {
    /// Returns the value as an integer (floats truncated toward zero), if it is one.
    pub(crate) fn as_i64(&self) -> Option<i64> {
        match self {
            Self::U(u) => i64::try_from(*u).ok(),
            Self::I(i) => Some(*i),
            Self::F(f) => float_to_i64(*f),
            Self::S(s) => {
                let s = s.trim();
                s.parse::<i64>()
                    .ok()
                    .or_else(|| s.parse::<f64>().ok().and_then(float_to_i64))
            }
        }
    }

    /// Returns the value as a non-negative integer, if it is one.
    pub(crate) fn as_u64(&self) -> Option<u64> {
        match self {
            Self::U(u) => Some(*u),
            other => other.as_i64().and_then(|i| u64::try_from(i).ok()),
        }
    }
}

fn float_to_i64(f: f64) -> Option<i64> {
    // Within ±2^62 the truncating cast is exact enough and cannot overflow.
    (f.is_finite() && f.abs() < 4.6e18).then_some(f.trunc() as i64)
}

/// A cursor as sent: a string, or (defensively) a number.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub(crate) enum CursorWire {
    /// The documented string.
    S(String),
    /// A number.
    N(serde_json::Number),
    /// Anything else (ignored).
    Other(serde::de::IgnoredAny),
}

impl CursorWire {
    /// Returns the cursor to send back, or `None` when there is none to follow.
    pub(crate) fn as_token(&self) -> Option<String> {
        match self {
            Self::S(s) if !s.trim().is_empty() => Some(s.clone()),
            Self::N(n) => Some(n.to_string()),
            Self::S(_) | Self::Other(_) => None,
        }
    }
}

/// What is left of a `GET /v1/usage/list` page once [`UsagePage`] has handed on its records.
#[derive(Debug, Default)]
pub(crate) struct PageEnd {
    /// How many items the page held.
    pub items: usize,
    /// The cursor of the next page.
    pub cursor: Option<CursorWire>,
}

/// Decodes a `GET /v1/usage/list` 200 body, `{items: [UsageRecord], cursor}`, handing each
/// record to the function as soon as it is read (its strings borrowed from the body), so that a
/// page of records is never collected first. Like every wire type here, `items` and `cursor`
/// may be absent or `null`, and other keys are skipped; anything but an object fails.
pub(crate) struct UsagePage<F>(pub F);

impl<'de, F: FnMut(UsageRecordWire<'de>)> DeserializeSeed<'de> for UsagePage<F> {
    type Value = PageEnd;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<PageEnd, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(UsageRecordWire<'de>)> Visitor<'de> for UsagePage<F> {
    type Value = PageEnd;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a usage list page (an object)")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<PageEnd, A::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Field {
            Items,
            Cursor,
            #[serde(other)]
            Other,
        }
        let mut end = PageEnd::default();
        let (mut items, mut cursor) = (false, false);
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::Items if items => return Err(de::Error::duplicate_field("items")),
                Field::Items => {
                    items = true;
                    end.items = map.next_value_seed(Items(&mut self.0))?;
                }
                Field::Cursor if cursor => return Err(de::Error::duplicate_field("cursor")),
                Field::Cursor => {
                    cursor = true;
                    end.cursor = map.next_value()?;
                }
                Field::Other => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(end)
    }
}

/// The `items` array (or `null`) of a usage page: each record goes to the function; the value is
/// how many there were.
struct Items<'f, F>(&'f mut F);

impl<'de, F: FnMut(UsageRecordWire<'de>)> DeserializeSeed<'de> for Items<'_, F> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, F: FnMut(UsageRecordWire<'de>)> Visitor<'de> for Items<'_, F> {
    type Value = usize;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of usage records")
    }

    fn visit_none<E>(self) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_unit<E>(self) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut n = 0;
        while let Some(record) = seq.next_element()? {
            (self.0)(record);
            n += 1;
        }
        Ok(n)
    }
}

/// Reads a whole usage page into a `Vec` (tests look at pages this way).
#[cfg(test)]
pub(crate) fn read_page(
    body: &str,
) -> Result<(Vec<UsageRecordWire<'_>>, PageEnd), serde_json::Error> {
    let mut records = Vec::new();
    let end = usage_core::http::json_seed(body.as_bytes(), UsagePage(|r| records.push(r)))?;
    Ok((records, end))
}

/// One usage record.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct UsageRecordWire<'a> {
    /// Record id.
    #[serde(borrow)]
    pub id: Option<Text<'a>>,
    /// Creation time, epoch milliseconds.
    pub created_at: Option<Num>,
    /// The usage type (`BASE`, …).
    #[serde(rename = "type", borrow)]
    pub usage_type: Option<Text<'a>>,
    /// The usage count (credit tokens for token types).
    pub count: Option<Num>,
    /// The bot, when there is one.
    #[serde(borrow)]
    pub bot_id: Option<Text<'a>>,
    /// The contact (end user), when there is one.
    #[serde(borrow)]
    pub contact_id: Option<Text<'a>>,
    /// The conversation, when there is one.
    #[serde(borrow)]
    pub conversation_id: Option<Text<'a>>,
}

/// `GET /v1/bot/list` 200 body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct BotListResponse {
    /// The page's bots.
    pub items: Option<Vec<BotWire>>,
    /// The cursor of the next page.
    pub cursor: Option<CursorWire>,
}

/// One bot.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct BotWire {
    /// Bot id.
    pub id: Option<String>,
    /// Human name.
    pub name: Option<String>,
    /// Unique alias, used as the name when there is no name.
    pub alias: Option<String>,
}

/// `GET /v1/bot/{botId}/usage/fetch` 200 body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct BotUsageResponse {
    /// BASE tokens (credit tokens) in the range.
    pub tokens: Option<Num>,
    /// Conversations in the range (unused).
    pub conversations: Option<Num>,
    /// Messages in the range (unused).
    pub messages: Option<Num>,
}

/// An error body in either documented shape: `{message, code}` or
/// `{success: false, error: {code, message}}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ErrorBody {
    /// Top-level message.
    pub message: Option<String>,
    /// Top-level code.
    pub code: Option<String>,
    /// The nested shape.
    pub error: Option<NestedError>,
}

/// The nested error object (or a bare string).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum NestedError {
    /// `{code, message}`.
    Object {
        /// Code.
        #[serde(default)]
        code: Option<String>,
        /// Message.
        #[serde(default)]
        message: Option<String>,
    },
    /// A bare message string.
    Text(String),
    /// Anything else.
    Other(serde::de::IgnoredAny),
}

impl ErrorBody {
    /// Returns `(code, message)`, preferring the top-level fields.
    pub(crate) fn code_and_message(&self) -> (Option<String>, Option<String>) {
        let (nested_code, nested_message) = match &self.error {
            Some(NestedError::Object { code, message }) => (code.clone(), message.clone()),
            Some(NestedError::Text(t)) => (None, Some(t.clone())),
            Some(NestedError::Other(_)) | None => (None, None),
        };
        let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        (
            nonempty(self.code.clone()).or(nonempty(nested_code)),
            nonempty(self.message.clone()).or(nonempty(nested_message)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_page_fixture_decodes() {
        let (items, page) = read_page(include_str!(
            "../../../fixtures/chatbotkit/usage_list_page1.json"
        ))
        .unwrap();
        assert_eq!((items.len(), page.items), (3, 3));
        assert_eq!(items[0].usage_type.as_ref().map(Text::as_str), Some("BASE"));
        assert_eq!(items[0].count.as_ref().and_then(Num::as_u64), Some(1287));
        assert_eq!(
            items[0].created_at.as_ref().and_then(Num::as_i64),
            Some(1_751_022_334_512)
        );
        assert!(items[1].bot_id.is_none());
        assert_eq!(
            page.cursor.and_then(|c| c.as_token()).as_deref(),
            Some("cur-2")
        );
    }

    #[test]
    fn bot_fixtures_decode() {
        let bots: BotListResponse =
            serde_json::from_str(include_str!("../../../fixtures/chatbotkit/bot_list.json"))
                .unwrap();
        let items = bots.items.unwrap();
        assert_eq!(items[0].name.as_deref(), Some("Support Agent"));
        assert_eq!(items[1].name, None);
        assert_eq!(items[1].alias.as_deref(), Some("sales"));
        let usage: BotUsageResponse =
            serde_json::from_str(include_str!("../../../fixtures/chatbotkit/bot_usage.json"))
                .unwrap();
        assert_eq!(usage.tokens.and_then(|n| n.as_u64()), Some(482_113));
    }

    #[test]
    fn partial_and_odd_payloads_never_fail_the_page() {
        let (items, page) = read_page(
            r#"{"items":[{}, {"id":null,"createdAt":"1751022334512","count":12.0,"type":null},
                {"createdAt":1.7510223345129e12,"count":-5}], "cursor": null, "extra": [1,2]}"#,
        )
        .unwrap();
        assert_eq!(page.items, 3);
        assert!(items[0].created_at.is_none() && items[0].count.is_none());
        assert_eq!(
            items[1].created_at.as_ref().and_then(Num::as_i64),
            Some(1_751_022_334_512)
        );
        assert_eq!(items[1].count.as_ref().and_then(Num::as_u64), Some(12));
        assert_eq!(items[2].count.as_ref().and_then(Num::as_u64), None);
        assert!(page.cursor.is_none());
        for empty in ["{}", r#"{"items":null}"#, r#"{"items":[]}"#] {
            let (items, page) = read_page(empty).unwrap();
            assert!(items.is_empty() && page.items == 0 && page.cursor.is_none());
        }
        let n: Num = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(n.as_i64(), None);
        let n: Num = serde_json::from_str("1e300").unwrap();
        assert_eq!(n.as_i64(), None);
        assert_eq!(CursorWire::S("  ".into()).as_token(), None);
        let c: CursorWire = serde_json::from_str("42").unwrap();
        assert_eq!(c.as_token().as_deref(), Some("42"));
        let c: CursorWire = serde_json::from_str("{\"a\":1}").unwrap();
        assert_eq!(c.as_token(), None);
        // Not an object at all: a decode error, not a panic.
        for bad in [
            "[1,2]",
            r#"{"items":[1]}"#,
            r#"{"items":{}}"#,
            r#"{"items":[],"items":[]}"#,
            r#"{"cursor":"a","cursor":"b"}"#,
            r#"{"items":[]} trailing"#,
        ] {
            assert!(read_page(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let body = r#"{"items":[{"id":"plain","botId":"b\u0031","type":null}]}"#;
        let (items, _) = read_page(body).unwrap();
        let r = &items[0];
        assert!(matches!(r.id.as_ref().unwrap().0, Cow::Borrowed("plain")));
        assert!(matches!(&r.bot_id.as_ref().unwrap().0, Cow::Owned(s) if s == "b1"));
        assert!(r.usage_type.is_none() && r.contact_id.is_none());
        // A string field holding something else fails the page, as a `String` field did.
        assert!(read_page(r#"{"items":[{"id":7}]}"#).is_err());
    }

    #[test]
    fn error_bodies_in_both_shapes() {
        let a: ErrorBody = serde_json::from_str(include_str!(
            "../../../fixtures/chatbotkit/error_not_authenticated.json"
        ))
        .unwrap();
        assert_eq!(
            a.code_and_message(),
            (
                Some("NOT_AUTHENTICATED".into()),
                Some("Not authenticated".into())
            )
        );
        let b: ErrorBody = serde_json::from_str(include_str!(
            "../../../fixtures/chatbotkit/error_alt_shape.json"
        ))
        .unwrap();
        assert_eq!(b.code_and_message().0.as_deref(), Some("TOO_MANY_REQUESTS"));
        let c: ErrorBody = serde_json::from_str(r#"{"error":"boom"}"#).unwrap();
        assert_eq!(c.code_and_message(), (None, Some("boom".into())));
        let d: ErrorBody = serde_json::from_str(r#"{"error":[1],"code":""}"#).unwrap();
        assert_eq!(d.code_and_message(), (None, None));
    }
}
