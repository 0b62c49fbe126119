//! Official-account messages: the root's direct children as fields. Unlike Pay's flat
//! documents, events nest (`ScanCodeInfo`, `SendPicsInfo`, the list of a
//! `subscribe_msg_popup_event`): a field with children is kept with an empty value and
//! its children are skipped, so an event the server does not handle still parses.

use std::collections::BTreeMap;

use quick_xml::Reader;
use quick_xml::events::Event;

use super::pay::xml::{MAX_BODY_BYTES, MAX_FIELDS, XmlError, resolve_ref};

/// Deeper than any message WeChat sends; a bound against pathological input.
const MAX_DEPTH: usize = 16;

pub fn parse_message(body: &[u8]) -> Result<BTreeMap<String, String>, XmlError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(XmlError::TooLarge);
    }
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut reader = Reader::from_reader(body);
    let config = reader.config_mut();
    config.trim_text(false);
    config.check_end_names = true;
    config.allow_unmatched_ends = false;

    let mut fields = BTreeMap::new();
    // 0: before the root; 1: in the root; 2: in a field; deeper: inside a nested field.
    let mut depth = 0usize;
    let mut done = false;
    let mut name = String::new();
    let mut value = String::new();
    let mut nested = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| XmlError::Malformed(e.to_string()))?;
        match event {
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Eof => {
                return if done {
                    Ok(fields)
                } else if depth == 0 {
                    Err(XmlError::Empty)
                } else {
                    Err(XmlError::Truncated)
                };
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Start(e) => {
                if done {
                    return Err(XmlError::TrailingContent);
                }
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(XmlError::Malformed("nested too deep".into()));
                }
                match depth {
                    1 => {}
                    2 => {
                        name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                        value.clear();
                        nested = false;
                    }
                    _ => nested = true,
                }
            }
            Event::Empty(e) => {
                if done {
                    return Err(XmlError::TrailingContent);
                }
                match depth {
                    0 => done = true,
                    1 => {
                        let n = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                        insert(&mut fields, n, String::new())?;
                    }
                    _ => nested = true,
                }
            }
            Event::End(_) => {
                match depth {
                    1 => done = true,
                    2 => {
                        let v = if nested {
                            String::new()
                        } else {
                            std::mem::take(&mut value)
                        };
                        insert(&mut fields, std::mem::take(&mut name), v)?;
                    }
                    _ => {}
                }
                depth = depth.saturating_sub(1);
            }
            Event::Text(t) => {
                let raw = t.into_inner();
                if depth == 2 {
                    value.push_str(std::str::from_utf8(&raw).map_err(|_| XmlError::Encoding)?);
                } else if depth < 2 && !raw.iter().all(u8::is_ascii_whitespace) {
                    return Err(XmlError::StrayText);
                }
            }
            Event::CData(t) => {
                if depth == 2 {
                    let raw = t.into_inner();
                    value.push_str(std::str::from_utf8(&raw).map_err(|_| XmlError::Encoding)?);
                } else if depth < 2 {
                    return Err(XmlError::StrayText);
                }
            }
            Event::GeneralRef(r) => {
                if depth == 2 {
                    value.push(resolve_ref(&r)?);
                } else if depth < 2 {
                    return Err(XmlError::StrayText);
                }
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
    // A repeated field is ambiguous: refuse rather than pick one.
    if fields.contains_key(&name) {
        return Err(XmlError::Duplicate(name));
    }
    fields.insert(name, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_events_parse_and_keep_the_top_level_fields() {
        let scan = br#"<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName><CreateTime>1408090606</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[scancode_waitmsg]]></Event><EventKey><![CDATA[6]]></EventKey><ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType><ScanResult><![CDATA[2]]></ScanResult></ScanCodeInfo></xml>"#;
        let f = parse_message(scan).expect("parses");
        assert_eq!(f["Event"], "scancode_waitmsg");
        assert_eq!(f["ScanCodeInfo"], "");
        assert!(!f.contains_key("ScanType"));
        let pics = br#"<xml><FromUserName>o1</FromUserName><MsgType>event</MsgType><SendPicsInfo><Count>1</Count><PicList><item><PicMd5Sum>abc</PicMd5Sum></item></PicList></SendPicsInfo></xml>"#;
        assert_eq!(parse_message(pics).expect("parses")["MsgType"], "event");
        assert!(parse_message(b"<xml><a>1</a>").is_err());
        assert!(parse_message(b"<!DOCTYPE x><xml/>").is_err());
        assert!(parse_message(b"<xml><a>1</a><a>2</a></xml>").is_err());
    }
}
