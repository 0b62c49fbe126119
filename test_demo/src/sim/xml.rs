//! The flat XML documents WeChat exchanges: `<xml><k>v</k>...</xml>` (and `<root>` inside a
//! refund notify's `req_info`).
//!
//! Parsing is deliberately strict: a size cap, no DOCTYPE (so no entity definitions), only the
//! five predefined entities and character references, one level of fields under the root,
//! a bounded number of fields. Nested elements inside a field (the official account's `<Video>`
//! etc.) are kept as their text content, flattened under the child element's name.

use std::collections::BTreeMap;

use quick_xml::Reader;
use quick_xml::events::Event;

/// Largest document accepted.
pub const MAX_XML_BYTES: usize = 64 * 1024;
const MAX_FIELDS: usize = 256;
const MAX_DEPTH: usize = 3;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XmlError {
    #[error("document too large")]
    TooLarge,
    #[error("document is not UTF-8")]
    NotUtf8,
    #[error("DOCTYPE is not allowed")]
    Doctype,
    #[error("unknown entity &{0};")]
    Entity(String),
    #[error("too many fields")]
    TooManyFields,
    #[error("nesting too deep")]
    TooDeep,
    #[error("no root element")]
    NoRoot,
    #[error("malformed XML: {0}")]
    Malformed(String),
}

/// A parsed flat document: the root element's name and its fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlatXml {
    pub root: String,
    pub fields: BTreeMap<String, String>,
}

/// Parses a flat WeChat XML document.
pub fn parse(bytes: &[u8]) -> Result<FlatXml, XmlError> {
    if bytes.len() > MAX_XML_BYTES {
        return Err(XmlError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| XmlError::NotUtf8)?;
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    reader.config_mut().trim_text(false);

    let mut root: Option<String> = None;
    let mut root_closed = false;
    // Stack of open element names below the root.
    let mut stack: Vec<(String, bool)> = Vec::new();
    let mut depth = 0usize;
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    // Current leaf value pieces: (text, is_cdata)
    let mut pieces: Vec<(String, bool)> = Vec::new();

    loop {
        let ev = reader
            .read_event()
            .map_err(|e| XmlError::Malformed(e.to_string()))?;
        match ev {
            Event::Eof => break,
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Start(s) => {
                let name =
                    String::from_utf8(s.name().as_ref().to_vec()).map_err(|_| XmlError::NotUtf8)?;
                if root_closed {
                    return Err(XmlError::Malformed("content after the root".into()));
                }
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                if root.is_none() {
                    root = Some(name);
                } else {
                    if let Some(parent) = stack.last_mut() {
                        parent.1 = true;
                    }
                    stack.push((name, false));
                    pieces.clear();
                }
            }
            Event::Empty(s) => {
                let name =
                    String::from_utf8(s.name().as_ref().to_vec()).map_err(|_| XmlError::NotUtf8)?;
                if root.is_none() {
                    root = Some(name);
                    root_closed = true;
                } else if !root_closed {
                    if depth + 1 > MAX_DEPTH {
                        return Err(XmlError::TooDeep);
                    }
                    if let Some(parent) = stack.last_mut() {
                        parent.1 = true;
                    }
                    insert(&mut fields, name, String::new())?;
                }
            }
            Event::End(_) => {
                if depth == 0 {
                    return Err(XmlError::Malformed("unbalanced end tag".into()));
                }
                depth -= 1;
                if depth == 0 {
                    root_closed = true;
                } else if let Some((name, had_children)) = stack.pop() {
                    // A container (`<Video>` around `<MediaId>`) has no value of its own.
                    if !had_children {
                        let value = join(&pieces);
                        insert(&mut fields, name, value)?;
                    }
                    pieces.clear();
                }
            }
            Event::Text(t) => {
                let s = t.decode().map_err(|e| XmlError::Malformed(e.to_string()))?;
                if !stack.is_empty() {
                    pieces.push((s.into_owned(), false));
                } else if !s.trim().is_empty() {
                    return Err(XmlError::Malformed("text outside of a field".into()));
                }
            }
            Event::CData(c) => {
                let s = c.decode().map_err(|e| XmlError::Malformed(e.to_string()))?;
                if stack.is_empty() {
                    return Err(XmlError::Malformed("CDATA outside of a field".into()));
                }
                pieces.push((s.into_owned(), true));
            }
            Event::GeneralRef(r) => {
                let ch = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(|e| XmlError::Malformed(e.to_string()))?
                        .ok_or_else(|| XmlError::Malformed("bad character reference".into()))?
                } else {
                    let name = r.decode().map_err(|e| XmlError::Malformed(e.to_string()))?;
                    match name.as_ref() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => return Err(XmlError::Entity(other.to_string())),
                    }
                };
                if stack.is_empty() {
                    return Err(XmlError::Malformed("reference outside of a field".into()));
                }
                pieces.push((ch.to_string(), false));
            }
        }
    }
    let root = root.ok_or(XmlError::NoRoot)?;
    if !root_closed {
        return Err(XmlError::Malformed("root element not closed".into()));
    }
    Ok(FlatXml { root, fields })
}

fn insert(
    fields: &mut BTreeMap<String, String>,
    name: String,
    value: String,
) -> Result<(), XmlError> {
    if fields.len() >= MAX_FIELDS && !fields.contains_key(&name) {
        return Err(XmlError::TooManyFields);
    }
    fields.insert(name, value);
    Ok(())
}

/// Joins the pieces of a value; when CDATA is present, whitespace-only text around it is
/// formatting, not content.
fn join(pieces: &[(String, bool)]) -> String {
    let has_cdata = pieces.iter().any(|(_, c)| *c);
    pieces
        .iter()
        .filter(|(s, c)| *c || !has_cdata || !s.trim().is_empty())
        .map(|(s, _)| s.as_str())
        .collect()
}

/// Builds `<root><k><![CDATA[v]]></k>...</root>`; values made only of digits are written bare,
/// as WeChat does for amounts.
pub fn build<'a, I>(root: &str, fields: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut out = String::with_capacity(256);
    out.push('<');
    out.push_str(root);
    out.push('>');
    for (k, v) in fields {
        out.push('<');
        out.push_str(k);
        out.push('>');
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(v);
        } else {
            out.push_str("<![CDATA[");
            out.push_str(&v.replace("]]>", "]]]]><![CDATA[>"));
            out.push_str("]]>");
        }
        out.push_str("</");
        out.push_str(k);
        out.push('>');
    }
    out.push_str("</");
    out.push_str(root);
    out.push('>');
    out
}

/// Builds from a map (field order = key order).
pub fn build_map(root: &str, fields: &BTreeMap<String, String>) -> String {
    build(root, fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cdata_text_and_refs() {
        let x = parse(
            b"<?xml version=\"1.0\"?>\n<xml>\n  <a><![CDATA[x<y]]></a>\n  <b>12</b>\n  <c>p&amp;q&#x41;</c><d/><e></e>\n</xml>",
        )
        .expect("parses");
        assert_eq!(x.root, "xml");
        assert_eq!(x.fields["a"], "x<y");
        assert_eq!(x.fields["b"], "12");
        assert_eq!(x.fields["c"], "p&qA");
        assert_eq!(x.fields["d"], "");
        assert_eq!(x.fields["e"], "");
    }

    #[test]
    fn rejects_doctype_and_entities() {
        let bomb = b"<!DOCTYPE xml [<!ENTITY a \"aaaa\">]><xml><a>&a;</a></xml>";
        assert_eq!(parse(bomb), Err(XmlError::Doctype));
        assert!(matches!(
            parse(b"<xml><a>&a;</a></xml>"),
            Err(XmlError::Entity(_))
        ));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(b"").is_err());
        assert!(parse(b"not xml").is_err());
        assert!(parse(b"<xml><a>1</b></xml>").is_err());
        assert!(parse(b"<xml><a>1</a>").is_err());
        assert!(parse(&vec![b' '; MAX_XML_BYTES + 1]).is_err());
        assert!(parse(b"<xml><a><b><c><d>1</d></c></b></a></xml>").is_err());
        assert!(parse(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn build_round_trips() {
        let xml = build(
            "xml",
            [("a", "1"), ("b", "x]]>y"), ("c", ""), ("d", "中文")],
        );
        let p = parse(xml.as_bytes()).expect("parses");
        assert_eq!(p.fields["a"], "1");
        assert_eq!(p.fields["b"], "x]]>y");
        assert_eq!(p.fields["c"], "");
        assert_eq!(p.fields["d"], "中文");
    }

    #[test]
    fn nested_elements_are_flattened() {
        let p = parse(
            b"<xml><MsgType>video</MsgType><Video><MediaId><![CDATA[m]]></MediaId><Title>t</Title></Video></xml>",
        )
        .expect("parses");
        assert_eq!(p.fields["MediaId"], "m");
        assert_eq!(p.fields["Title"], "t");
        assert_eq!(p.fields["MsgType"], "video");
    }
}
