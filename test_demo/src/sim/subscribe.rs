//! The parameter rules of subscribe-message values (`subscribeMessage.send`, "参数值内容限制
//! 说明"), keyed by the type prefix of the data key (`thing1` → `thing`):
//!
//! | type | rule |
//! |---|---|
//! | `thing` | ≤ 20 characters: Chinese, letters, digits or symbols |
//! | `number` | ≤ 32 digits, may be a decimal |
//! | `letter` | ≤ 32 letters only |
//! | `symbol` | ≤ 5 symbols only |
//! | `character_string` | ≤ 32 letters, digits or symbols |
//! | `time` | 24-hour time, optionally after a date; a range joined by `~` |
//! | `date` | a date, optionally followed by a 24-hour time; a range joined by `~` |
//! | `amount` | one currency sign + ≤ 10 digits, may be a decimal, may end in `元` |
//! | `phone_number` | ≤ 17 digits or symbols |
//! | `car_number` | ≤ 8; the first and last may be Chinese, the rest letters or digits |
//! | `name` | ≤ 10 Chinese characters (mixed Chinese and letters count as Chinese), or ≤ 20 letters or symbols |
//! | `phrase` | ≤ 5 Chinese characters only |
//! | `enum` | one of the template's enum values (not known here: any non-empty value) |
//!
//! WeChat answers a value that breaks its rule with errcode 47003 and
//! `argument invalid! data.<key>.value invalid`; an empty value with `... is empty`.
//! Choices where the table is loose: the currency sign is optional; a decimal has at most two
//! places in `amount`; `time`/`date` accept `yyyy-mm-dd`, `yyyy/mm/dd` and `yyyy年m月d日`
//! dates and `HH:MM` or `HH:MM:SS` times; a key of an unknown type is refused.

use serde_json::Value;

/// A refusal: the errmsg WeChat would give (without the rid).
pub type Refusal = String;

/// Checks `data` of a `subscribe/send` body.
pub fn check_data(data: &Value) -> Result<(), Refusal> {
    let Some(map) = data.as_object() else {
        return Err("argument invalid! data.format invalid".into());
    };
    for (key, entry) in map {
        let Some(value) = entry.get("value").and_then(Value::as_str) else {
            return Err(format!("argument invalid! data.{key}.value invalid"));
        };
        if value.is_empty() {
            return Err(format!("argument invalid! data.{key}.value is empty"));
        }
        if !value_ok(key, value) {
            return Err(format!("argument invalid! data.{key}.value invalid"));
        }
    }
    Ok(())
}

/// The type of a data key: the key without its trailing digits.
pub fn key_type(key: &str) -> &str {
    key.trim_end_matches(|c: char| c.is_ascii_digit())
}

/// Whether `value` obeys the rule of `key`'s type.
pub fn value_ok(key: &str, value: &str) -> bool {
    let n = value.chars().count();
    match key_type(key) {
        "thing" => n <= 20 && !value.chars().any(char::is_control),
        "number" => n <= 32 && is_decimal(value, usize::MAX),
        "letter" => n <= 32 && value.chars().all(|c| c.is_ascii_alphabetic()),
        "symbol" => n <= 5 && value.chars().all(is_symbol),
        "character_string" => {
            n <= 32
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || is_symbol(c))
        }
        "time" => range_ok(value, time_ok),
        "date" => range_ok(value, date_ok),
        "amount" => amount_ok(value),
        "phone_number" => {
            n <= 17
                && value.chars().any(|c| c.is_ascii_digit())
                && value.chars().all(|c| c.is_ascii_digit() || is_symbol(c))
        }
        "car_number" => car_number_ok(value),
        "name" => name_ok(value),
        "phrase" => n <= 5 && value.chars().all(is_chinese),
        "enum" => n <= 20,
        _ => false,
    }
}

/// A CJK ideograph.
pub fn is_chinese(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}')
}

/// A symbol: visible, neither a letter, a digit nor a Chinese character.
fn is_symbol(c: char) -> bool {
    !c.is_alphanumeric() && !c.is_whitespace() && !c.is_control()
}

/// Digits with an optional fraction (`12`, `12.5`); at most `max_places` after the point.
fn is_decimal(s: &str, max_places: usize) -> bool {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    digits(int) && frac.is_none_or(|f| digits(f) && f.len() <= max_places)
}

fn amount_ok(v: &str) -> bool {
    let v = v.strip_suffix('元').unwrap_or(v);
    let v = v
        .strip_prefix(['¥', '￥', '$', '€', '£', '＄'])
        .unwrap_or(v);
    let digits = v.bytes().filter(u8::is_ascii_digit).count();
    is_decimal(v, 2) && digits <= 10
}

fn car_number_ok(v: &str) -> bool {
    let chars: Vec<char> = v.chars().collect();
    if chars.is_empty() || chars.len() > 8 {
        return false;
    }
    let last = chars.len() - 1;
    chars.iter().enumerate().all(|(i, &c)| {
        c.is_ascii_alphanumeric() && c.is_ascii() || ((i == 0 || i == last) && is_chinese(c))
    })
}

fn name_ok(v: &str) -> bool {
    let n = v.chars().count();
    if v.chars().any(is_chinese) {
        // Chinese names, or Chinese mixed with letters: 10 characters.
        n <= 10
            && v.chars()
                .all(|c| is_chinese(c) || c.is_ascii_alphabetic() || c == '·')
    } else {
        n <= 20
            && v.chars()
                .all(|c| c.is_ascii_alphabetic() || c == ' ' || is_symbol(c))
            && v.chars().any(|c| c.is_ascii_alphabetic())
    }
}

/// `a` or `a~b`, each side checked by `one`.
fn range_ok(v: &str, one: fn(&str) -> bool) -> bool {
    match v.split_once('~') {
        Some((a, b)) => one(a.trim()) && one(b.trim()),
        None => one(v),
    }
}

fn num_in(s: &str, min_len: usize, max_len: usize, lo: u32, hi: u32) -> bool {
    (min_len..=max_len).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_digit())
        && s.parse::<u32>().is_ok_and(|n| (lo..=hi).contains(&n))
}

/// `HH:MM` or `HH:MM:SS`, 24-hour.
fn clock_ok(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [h, m] => num_in(h, 1, 2, 0, 23) && num_in(m, 2, 2, 0, 59),
        [h, m, sec] => num_in(h, 1, 2, 0, 23) && num_in(m, 2, 2, 0, 59) && num_in(sec, 2, 2, 0, 59),
        _ => false,
    }
}

/// `2019-10-01`, `2019/10/01`, `2019年10月1日` (a real calendar day).
fn day_ok(s: &str) -> bool {
    let (y, m, d) = if let Some(rest) = s.strip_suffix('日') {
        let Some((y, md)) = rest.split_once('年') else {
            return false;
        };
        let Some((m, d)) = md.split_once('月') else {
            return false;
        };
        (y, m, d)
    } else {
        let sep = if s.contains('-') { '-' } else { '/' };
        let parts: Vec<&str> = s.split(sep).collect();
        let [y, m, d] = parts.as_slice() else {
            return false;
        };
        (*y, *m, *d)
    };
    if !(num_in(y, 4, 4, 1970, 9999) && num_in(m, 1, 2, 1, 12) && num_in(d, 1, 2, 1, 31)) {
        return false;
    }
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<i32>(), m.parse::<u32>(), d.parse::<u32>()) else {
        return false;
    };
    chrono::NaiveDate::from_ymd_opt(y, m, d).is_some()
}

/// A 24-hour time, optionally after a date.
fn time_ok(s: &str) -> bool {
    match s.split_once(' ') {
        Some((d, t)) => day_ok(d) && clock_ok(t.trim_start()),
        None => clock_ok(s),
    }
}

/// A date, optionally followed by a 24-hour time.
fn date_ok(s: &str) -> bool {
    match s.split_once(' ') {
        Some((d, t)) => day_ok(d) && clock_ok(t.trim_start()),
        None => day_ok(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_table() {
        let ok = [
            ("thing1", "校园跑腿-快递代取"),
            ("thing1", "12345678901234567890"),
            ("number2", "3.50"),
            ("number2", "12"),
            ("letter3", "abcXYZ"),
            ("symbol4", "%$#"),
            ("character_string5", "CE202401010001-x"),
            ("time6", "15:01"),
            ("time6", "2019年10月1日 15:01"),
            ("time6", "2019-10-01 15:01"),
            ("time6", "2019-10-01 15:01:30"),
            ("time6", "15:01~16:30"),
            ("date7", "2019-10-01"),
            ("date7", "2019年10月1日"),
            ("date7", "2019年10月1日 15:01"),
            ("date7", "2019-10-01~2019-10-07"),
            ("amount8", "¥3.50"),
            ("amount8", "3.50元"),
            ("amount8", "￥100"),
            ("amount8", "1234567890"),
            ("phone_number9", "+86-0766-66888866"),
            ("car_number10", "粤A8Z888挂"),
            ("name11", "张三"),
            ("name11", "Zhang San"),
            ("phrase12", "配送中"),
            ("phrase12", "已支付"),
        ];
        for (k, v) in ok {
            assert!(value_ok(k, v), "{k} = {v:?} should pass");
        }
        let bad = [
            ("thing1", "123456789012345678901"),
            ("number2", "3,5"),
            ("number2", "-3"),
            ("number2", &"1".repeat(33)),
            ("letter3", "abc1"),
            ("symbol4", "%%%%%%"),
            ("symbol4", "a"),
            ("character_string5", "订单1"),
            ("character_string5", &"x".repeat(33)),
            ("time6", "2019-10-01"),
            ("time6", "25:00"),
            ("time6", "3pm"),
            ("date7", "2019-02-30"),
            ("date7", "yesterday"),
            ("amount8", "3.5 yuan"),
            ("amount8", "12345678901"),
            ("amount8", "¥3.505"),
            ("phone_number9", "123456789012345678"),
            ("phone_number9", "call me"),
            ("car_number10", "粤A8Z888挂X"),
            ("car_number10", "A粤8"),
            ("name11", "张三李四王五赵六钱七孙"),
            ("name11", "Zhang3"),
            ("phrase12", "已支付 Paid"),
            ("phrase12", "配送中配送中"),
            ("phrase12", "ok"),
            ("unknown13", "x"),
        ];
        for (k, v) in bad {
            assert!(!value_ok(k, v), "{k} = {v:?} should be refused");
        }
    }

    #[test]
    fn errmsg_names_the_key() {
        let d = serde_json::json!({"thing1": {"value": "ok"}, "phrase2": {"value": "已支付 Paid"}});
        assert_eq!(
            check_data(&d),
            Err("argument invalid! data.phrase2.value invalid".to_string())
        );
        let d = serde_json::json!({"thing1": {"value": ""}});
        assert_eq!(
            check_data(&d),
            Err("argument invalid! data.thing1.value is empty".to_string())
        );
        let d = serde_json::json!({"number1": {"value": 3}});
        assert!(check_data(&d).is_err());
        assert_eq!(key_type("character_string12"), "character_string");
    }
}
