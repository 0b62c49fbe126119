//! Subscribe-message data from typed values that obey WeChat's value rules
//! (`subscribeMessage.send`, "参数值内容限制说明"); a value breaking its rule is refused
//! with errcode 47003, so each type here can only hold what its rule allows, and the key
//! of each entry is made from its type (`thing` + 4 → `thing4`).

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use serde_json::{Value as Json, json};

/// `thing`: at most 20 characters.
const THING_MAX_CHARS: usize = 20;
/// `character_string`: at most 32 letters, digits or symbols.
const CHARACTER_STRING_MAX: usize = 32;
/// `amount`: at most 10 digits.
const AMOUNT_MAX_DIGITS: usize = 10;

/// Short states, from a fixed set: `phrase` takes at most 5 Chinese characters and
/// nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phrase {
    Paid,
    Accepted,
    Delivered,
    Refunded,
    Reassigned,
    ToConfirm,
}

impl Phrase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phrase::Paid => "已支付",
            Phrase::Accepted => "已接单",
            Phrase::Delivered => "已送达",
            Phrase::Refunded => "已退款",
            Phrase::Reassigned => "已改派",
            Phrase::ToConfirm => "待确认",
        }
    }
}

/// One value, of one of WeChat's types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `thing`: text cut to 20 characters on character boundaries, control characters
    /// dropped; never empty.
    Thing(String),
    Phrase(Phrase),
    /// `character_string`: visible ASCII only, at most 32 characters.
    CharacterString(String),
    /// `amount`: money in fen, shown as `¥12.34`.
    Amount(String),
    /// `time`: `yyyy-mm-dd HH:MM`, Beijing time.
    Time(String),
}

/// A value that cannot be made to obey its rule.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("subscribe-message value out of WeChat's rules: {0}")]
pub struct ValueError(&'static str);

impl Value {
    /// Free text as a `thing`: cut to 20 characters (never inside one).
    pub fn thing(text: &str) -> Self {
        let cleaned: String = text
            .trim()
            .chars()
            .filter(|c| !c.is_control())
            .take(THING_MAX_CHARS)
            .collect();
        let cleaned = cleaned.trim_end().to_string();
        Value::Thing(if cleaned.is_empty() {
            "-".to_string()
        } else {
            cleaned
        })
    }

    /// An identifier (an order number) as a `character_string`.
    pub fn character_string(id: &str) -> Result<Self, ValueError> {
        let ok = !id.is_empty()
            && id.chars().count() <= CHARACTER_STRING_MAX
            && id.chars().all(|c| c.is_ascii_graphic());
        if ok {
            Ok(Value::CharacterString(id.to_string()))
        } else {
            Err(ValueError("character_string"))
        }
    }

    /// Money in fen as an `amount` (`¥3.00`).
    pub fn amount(fen: i64) -> Result<Self, ValueError> {
        if fen < 0 {
            return Err(ValueError("amount"));
        }
        let shown = format!("{}.{:02}", fen / 100, fen % 100);
        if shown.bytes().filter(u8::is_ascii_digit).count() > AMOUNT_MAX_DIGITS {
            return Err(ValueError("amount"));
        }
        Ok(Value::Amount(format!("¥{shown}")))
    }

    /// A UTC time as a `time` in Beijing time.
    pub fn time(utc: NaiveDateTime) -> Self {
        let beijing = utc + chrono::Duration::hours(8);
        Value::Time(beijing.format("%Y-%m-%d %H:%M").to_string())
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::Thing(_) => "thing",
            Value::Phrase(_) => "phrase",
            Value::CharacterString(_) => "character_string",
            Value::Amount(_) => "amount",
            Value::Time(_) => "time",
        }
    }

    fn text(&self) -> &str {
        match self {
            Value::Thing(s) | Value::CharacterString(s) | Value::Amount(s) | Value::Time(s) => s,
            Value::Phrase(p) => p.as_str(),
        }
    }
}

/// The `data` of a subscribe message: entries keyed by type and the template's number.
#[derive(Clone, Debug, Default)]
pub struct MessageData {
    entries: BTreeMap<String, Value>,
}

impl MessageData {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the template's entry `n` (`thing4` for a [`Value::Thing`] at 4).
    pub fn with(mut self, n: u8, value: Value) -> Self {
        self.entries.insert(format!("{}{n}", value.kind()), value);
        self
    }

    /// `{"thing4": {"value": "..."}, ...}`, as `subscribe/send` wants it.
    pub fn to_json(&self) -> Json {
        let map: serde_json::Map<String, Json> = self
            .entries
            .iter()
            .map(|(k, v)| (k.clone(), json!({ "value": v.text() })))
            .collect();
        Json::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn things_are_cut_to_twenty_characters_on_boundaries() {
        let long = "北京市海淀区学院路三十七号北航学生公寓十二号楼三层";
        let Value::Thing(t) = Value::thing(long) else {
            panic!("a thing")
        };
        assert_eq!(t.chars().count(), 20);
        assert!(long.starts_with(&t));
        assert_eq!(Value::thing("  \n "), Value::Thing("-".into()));
        assert_eq!(Value::thing("Dorm\t5"), Value::Thing("Dorm5".into()));
    }

    #[test]
    fn phrases_are_at_most_five_chinese_characters() {
        for p in [
            Phrase::Paid,
            Phrase::Accepted,
            Phrase::Delivered,
            Phrase::Refunded,
            Phrase::ToConfirm,
        ] {
            let s = p.as_str();
            assert!(s.chars().count() <= 5, "{s}");
            assert!(
                s.chars().all(|c| ('\u{4E00}'..='\u{9FFF}').contains(&c)),
                "{s}"
            );
        }
    }

    #[test]
    fn amounts_and_ids_follow_their_rules() {
        assert_eq!(Value::amount(300), Ok(Value::Amount("¥3.00".into())));
        assert_eq!(Value::amount(5), Ok(Value::Amount("¥0.05".into())));
        assert!(Value::amount(-1).is_err());
        assert!(Value::amount(100_000_000_000).is_err());
        assert!(Value::character_string("CE2026113012345").is_ok());
        assert!(Value::character_string(&"x".repeat(33)).is_err());
        assert!(Value::character_string("订单").is_err());
    }

    #[test]
    fn keys_come_from_the_value_types() {
        let d = MessageData::new()
            .with(1, Value::Phrase(Phrase::Paid))
            .with(2, Value::thing("Dorm 5"));
        assert_eq!(
            d.to_json(),
            json!({"phrase1": {"value": "已支付"}, "thing2": {"value": "Dorm 5"}})
        );
    }
}
