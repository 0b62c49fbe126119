//! The flat XML that WeChat Pay v2 speaks: `<xml><k>v</k>...</xml>` (and `<root>` inside
//! a refund notify's `req_info`), values as text or CDATA.
//!
//! The parser is deliberately narrow: it refuses DOCTYPE (so no entity declarations,
//! no external entities, no billion laughs), resolves only the five predefined entities
//! and character references, caps the body size and field count, rejects nesting and
//! duplicate fields, and reports every oddity as an error rather than panicking.

use std::collections::BTreeMap;

use quick_xml::Reader;
use quick_xml::events::{BytesRef, Event};

/// Largest body accepted, in bytes. WeChat's biggest v2 answers (a refund query with
/// many partial refunds) stay well below this.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most fields accepted in one document.
pub const MAX_FIELDS: usize = 1024;
/// Longest field name accepted.
const MAX_NAME_LEN: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XmlError {
    #[error("XML body larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("more than {MAX_FIELDS} fields")]
    TooManyFields,
    #[error("DOCTYPE and entity declarations are not accepted")]
    Doctype,
    #[error("undefined entity reference")]
    UndefinedEntity,
    #[error("root element must be <xml> or <root>")]
    BadRoot,
    #[error("nested elements are not accepted (field {0})")]
    Nested(String),
    #[error("invalid field name")]
    BadName,
    #[error("duplicate field {0}")]
    Duplicate(String),
    #[error("text outside a field")]
    StrayText,
    #[error("content after the root element")]
    TrailingContent,
    #[error("document ends before the root element closes")]
    Truncated,
    #[error("empty document")]
    Empty,
    #[error("text is not valid UTF-8")]
    Encoding,
    #[error("malformed XML: {0}")]
    Malformed(String),
}

/// Parses a flat `<xml>` or `<root>` document into its fields.
pub fn parse_flat(body: &[u8]) -> Result<BTreeMap<String, String>, XmlError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(XmlError::TooLarge);
    }
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut reader = Reader::from_reader(body);
    let config = reader.config_mut();
    config.trim_text(false);
    config.check_end_names = true;
    config.expand_empty_elements = false;
    config.allow_unmatched_ends = false;

    #[derive(PartialEq)]
    enum State {
        BeforeRoot,
        InRoot,
        InField,
        AfterRoot,
    }
    let mut state = State::BeforeRoot;
    let mut fields = BTreeMap::new();
    let mut name = String::new();
    let mut value = String::new();

    loop {
        let event = reader
            .read_event()
            .map_err(|e| XmlError::Malformed(e.to_string()))?;
        match event {
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Eof => {
                return match state {
                    State::AfterRoot => Ok(fields),
                    State::BeforeRoot => Err(XmlError::Empty),
                    State::InRoot | State::InField => Err(XmlError::Truncated),
                };
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {
                if state == State::InField {
                    // A comment inside a value would silently change what is signed.
                    return Err(XmlError::Malformed(format!("markup inside field {name}")));
                }
            }
            Event::Start(e) => match state {
                State::BeforeRoot => {
                    let n = e.name();
                    if n.as_ref() != b"xml" && n.as_ref() != b"root" {
                        return Err(XmlError::BadRoot);
                    }
                    state = State::InRoot;
                }
                State::InRoot => {
                    name = field_name(e.name().as_ref())?;
                    value.clear();
                    state = State::InField;
                }
                State::InField => return Err(XmlError::Nested(name)),
                State::AfterRoot => return Err(XmlError::TrailingContent),
            },
            Event::Empty(e) => match state {
                State::BeforeRoot => {
                    let n = e.name();
                    if n.as_ref() != b"xml" && n.as_ref() != b"root" {
                        return Err(XmlError::BadRoot);
                    }
                    state = State::AfterRoot;
                }
                State::InRoot => {
                    let n = field_name(e.name().as_ref())?;
                    insert(&mut fields, n, String::new())?;
                }
                State::InField => return Err(XmlError::Nested(name)),
                State::AfterRoot => return Err(XmlError::TrailingContent),
            },
            Event::End(_) => match state {
                State::InField => {
                    insert(
                        &mut fields,
                        std::mem::take(&mut name),
                        std::mem::take(&mut value),
                    )?;
                    state = State::InRoot;
                }
                State::InRoot => state = State::AfterRoot,
                // quick-xml reports unmatched end tags itself; be safe anyway.
                State::BeforeRoot | State::AfterRoot => {
                    return Err(XmlError::Malformed("unmatched end tag".into()));
                }
            },
            Event::Text(t) => {
                let raw = t.into_inner();
                if state == State::InField {
                    value.push_str(std::str::from_utf8(&raw).map_err(|_| XmlError::Encoding)?);
                } else if !raw.iter().all(u8::is_ascii_whitespace) {
                    return Err(match state {
                        State::AfterRoot => XmlError::TrailingContent,
                        _ => XmlError::StrayText,
                    });
                }
            }
            Event::CData(t) => {
                if state != State::InField {
                    return Err(XmlError::StrayText);
                }
                let raw = t.into_inner();
                value.push_str(std::str::from_utf8(&raw).map_err(|_| XmlError::Encoding)?);
            }
            Event::GeneralRef(r) => {
                if state != State::InField {
                    return Err(XmlError::StrayText);
                }
                value.push(resolve_ref(&r)?);
            }
        }
    }
}

fn insert(
    fields: &mut BTreeMap<String, String>,
    name: String,
    value: String,
) -> Result<(), XmlError> {
    if fields.len() >= MAX_FIELDS {
        return Err(XmlError::TooManyFields);
    }
    if fields.contains_key(&name) {
        return Err(XmlError::Duplicate(name));
    }
    fields.insert(name, value);
    Ok(())
}

fn field_name(raw: &[u8]) -> Result<String, XmlError> {
    let Some(&first) = raw.first() else {
        return Err(XmlError::BadName);
    };
    let starts_well = first.is_ascii_alphabetic() || first == b'_';
    let chars_ok = raw
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !starts_well || !chars_ok || raw.len() > MAX_NAME_LEN {
        return Err(XmlError::BadName);
    }
    // All ASCII, checked above.
    Ok(raw.iter().map(|&b| b as char).collect())
}

pub(crate) fn resolve_ref(r: &BytesRef<'_>) -> Result<char, XmlError> {
    if r.is_char_ref() {
        return match r.resolve_char_ref() {
            Ok(Some(c)) => Ok(c),
            Ok(None) | Err(_) => Err(XmlError::Malformed("invalid character reference".into())),
        };
    }
    let name: &[u8] = r;
    match name {
        b"amp" => Ok('&'),
        b"lt" => Ok('<'),
        b"gt" => Ok('>'),
        b"quot" => Ok('"'),
        b"apos" => Ok('\''),
        _ => Err(XmlError::UndefinedEntity),
    }
}

/// Serialises fields as `<xml><k><![CDATA[v]]></k>...</xml>`, in key order.
/// A `]]>` inside a value is split across two CDATA sections, so any value round-trips.
/// Keys are this program's own parameter names; a key that is not a plain XML name is
/// skipped rather than written as broken markup.
pub fn to_xml(params: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(64 + params.len() * 48);
    out.push_str("<xml>");
    for (k, v) in params {
        if field_name(k.as_bytes()).is_err() {
            tracing::warn!(field = %k, "skipping a field whose name is not an XML name");
            continue;
        }
        out.push('<');
        out.push_str(k);
        out.push('>');
        push_cdata(&mut out, v);
        out.push_str("</");
        out.push_str(k);
        out.push('>');
    }
    out.push_str("</xml>");
    out
}

/// Appends `v` as one or more CDATA sections.
pub(crate) fn push_cdata(out: &mut String, v: &str) {
    out.push_str("<![CDATA[");
    out.push_str(&v.replace("]]>", "]]]]><![CDATA[>"));
    out.push_str("]]>");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_text_and_cdata() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<xml>
  <return_code><![CDATA[SUCCESS]]></return_code>
  <total_fee>100</total_fee>
  <body>a &amp; b &#x4E2D;&#25991;</body>
  <empty></empty>
  <also_empty/>
  <!-- a comment between fields -->
</xml>
"#;
        let m = parse_flat(body).expect("parse");
        assert_eq!(
            m,
            map(&[
                ("return_code", "SUCCESS"),
                ("total_fee", "100"),
                ("body", "a & b 中文"),
                ("empty", ""),
                ("also_empty", ""),
            ])
        );
    }

    #[test]
    fn accepts_root_element() {
        let m = parse_flat(b"<root><out_refund_no><![CDATA[1234]]></out_refund_no></root>")
            .expect("parse");
        assert_eq!(m["out_refund_no"], "1234");
        assert!(parse_flat(b"<xml/>").expect("empty root").is_empty());
    }

    #[test]
    fn cdata_mixed_with_text_is_concatenated() {
        let m = parse_flat(b"<xml><a>x<![CDATA[<y>]]>z</a></xml>").expect("parse");
        assert_eq!(m["a"], "x<y>z");
    }

    #[test]
    fn round_trips_hostile_values() {
        let m = map(&[
            ("a", "]]>"),
            ("b", "x]]>y]]]]>z<![CDATA[w"),
            ("c", "<xml>&amp;</xml>"),
            ("d", "中文 \"quoted\" 'single'"),
            ("e", ""),
        ]);
        let xml = to_xml(&m);
        assert_eq!(parse_flat(xml.as_bytes()).expect("round trip"), m);
    }

    #[test]
    fn to_xml_format() {
        let m = map(&[("b", "2"), ("a", "1")]);
        assert_eq!(
            to_xml(&m),
            "<xml><a><![CDATA[1]]></a><b><![CDATA[2]]></b></xml>"
        );
        let bad = map(&[("a b", "x"), ("ok", "y")]);
        assert_eq!(to_xml(&bad), "<xml><ok><![CDATA[y]]></ok></xml>");
    }

    #[test]
    fn rejects_doctype_and_entities() {
        let xxe = br#"<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><a>&xxe;</a></xml>"#;
        assert_eq!(parse_flat(xxe), Err(XmlError::Doctype));

        let laughs = br#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<xml><a>&lol3;</a></xml>"#;
        assert_eq!(parse_flat(laughs), Err(XmlError::Doctype));

        // An entity used without any declaration.
        assert_eq!(
            parse_flat(b"<xml><a>&xxe;</a></xml>"),
            Err(XmlError::UndefinedEntity)
        );
        // A declaration outside a DOCTYPE is not XML at all.
        assert!(parse_flat(b"<!ENTITY x \"y\"><xml><a>&x;</a></xml>").is_err());
    }

    #[test]
    fn rejects_malformed_documents() {
        let cases: &[&[u8]] = &[
            b"",
            b"   ",
            b"not xml",
            b"<xml>",
            b"<xml><a>1</a>",
            b"<xml><a>1</b></xml>",
            b"<xml><a>1</a></xml><xml></xml>",
            b"<xml><a>1</a></xml>trailing",
            b"<xml>stray<a>1</a></xml>",
            b"<xml><a><b>1</b></a></xml>",
            b"<xml><a>1</a><a>2</a></xml>",
            b"<html><a>1</a></html>",
            b"<xml><a>1<!-- c --></a></xml>",
            b"<xml><a>\xff\xfe</a></xml>",
            b"<xml><a>&#0;</a></xml>",
            b"<xml><a>&#xZZ;</a></xml>",
            b"<xml><1a>1</1a></xml>",
            b"<xml><a>1</a></xml",
            b"<xml><![CDATA[x]]></xml>",
            b"</xml>",
            b"<xml><a attr=\"1\">1</a></a></xml>",
        ];
        for c in cases {
            assert!(
                parse_flat(c).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(c)
            );
        }
    }

    #[test]
    fn caps_size_and_field_count() {
        let big = format!("<xml><a>{}</a></xml>", "x".repeat(MAX_BODY_BYTES));
        assert_eq!(parse_flat(big.as_bytes()), Err(XmlError::TooLarge));

        let mut many = String::from("<xml>");
        for i in 0..=MAX_FIELDS {
            many.push_str(&format!("<f{i}/>"));
        }
        many.push_str("</xml>");
        assert!(many.len() < MAX_BODY_BYTES);
        assert_eq!(parse_flat(many.as_bytes()), Err(XmlError::TooManyFields));
    }

    #[test]
    fn never_panics_on_truncations_and_garbage() {
        let doc = to_xml(&map(&[("a", "1"), ("b", "]]>"), ("c", "中文")]));
        let bytes = doc.as_bytes();
        for i in 0..bytes.len() {
            let _ = parse_flat(&bytes[..i]);
            let mut flipped = bytes.to_vec();
            flipped[i] ^= 0x5a;
            let _ = parse_flat(&flipped);
        }
        // Deep nesting does not recurse.
        let deep = "<xml>".to_string() + &"<a>".repeat(10_000);
        assert!(parse_flat(deep.as_bytes()).is_err());
    }
}
