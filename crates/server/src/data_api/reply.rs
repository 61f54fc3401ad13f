//! A command's reply as the REST protocol carries it: `{"result": ...}` or
//! `{"error": "..."}`. Replies map as RESP2 would render them (the SDKs read
//! RESP2 shapes): a map is a flat array of keys and values, a set an array,
//! a double its text, a boolean 1 or 0, a big number its digits. With
//! `Upstash-Encoding: base64` every string is sent as the base64 of its
//! bytes, except the status `OK`, which the SDKs expect as it is; without
//! it, a string that is not UTF-8 is sent with U+FFFD in place of the
//! invalid bytes (binary values should ask for base64).

use base64::Engine;
use meridian_resp::Frame;
use serde_json::{json, Map, Value};

/// How strings are carried in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Base64,
}

/// `{"result": ...}`, or `{"error": "..."}` for an error reply.
pub fn entry(frame: &Frame, encoding: Encoding) -> Value {
    match frame {
        Frame::Error(text) => json!({ "error": text }),
        other => {
            let mut map = Map::with_capacity(1);
            map.insert("result".into(), value(other, encoding));
            Value::Object(map)
        }
    }
}

/// A reply as a JSON value (an error nested in an array becomes its text).
pub fn value(frame: &Frame, encoding: Encoding) -> Value {
    match frame {
        Frame::Simple(text) if text == "OK" => Value::String("OK".into()),
        Frame::Simple(text) | Frame::Error(text) | Frame::BigNumber(text) => {
            string(text.as_bytes(), encoding)
        }
        Frame::Integer(n) => Value::from(*n),
        Frame::Bulk(bytes) => string(bytes, encoding),
        Frame::Verbatim { text, .. } => string(text, encoding),
        Frame::Null | Frame::NullArray => Value::Null,
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
            Value::Array(items.iter().map(|f| value(f, encoding)).collect())
        }
        Frame::Map(pairs) => Value::Array(
            pairs
                .iter()
                .flat_map(|(k, v)| [value(k, encoding), value(v, encoding)])
                .collect(),
        ),
        Frame::Double(d) => string(meridian_resp::format_double(*d).as_bytes(), encoding),
        Frame::HumanDouble(d) => string(meridian_resp::format_long_double(*d).as_bytes(), encoding),
        Frame::Boolean(b) => Value::from(i64::from(*b)),
    }
}

fn string(bytes: &[u8], encoding: Encoding) -> Value {
    match encoding {
        Encoding::Base64 => Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
        Encoding::Json => Value::String(String::from_utf8_lossy(bytes).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn replies_map_as_resp2_renders_them() {
        let f = Frame::Array(vec![
            Frame::Integer(3),
            Frame::Null,
            Frame::Bulk(Bytes::from_static(b"v")),
            Frame::Map(vec![(Frame::bulk("f"), Frame::Double(1.5))]),
            Frame::Boolean(true),
            Frame::Set(vec![Frame::simple("PONG")]),
        ]);
        assert_eq!(
            value(&f, Encoding::Json),
            json!([3, null, "v", ["f", "1.5"], 1, ["PONG"]])
        );
    }

    #[test]
    fn base64_encodes_every_string_but_ok() {
        assert_eq!(value(&Frame::ok(), Encoding::Base64), json!("OK"));
        assert_eq!(
            value(&Frame::simple("PONG"), Encoding::Base64),
            json!("UE9ORw==")
        );
        assert_eq!(
            value(
                &Frame::Bulk(Bytes::from_static(b"\xff\x00")),
                Encoding::Base64
            ),
            json!("/wA=")
        );
        assert_eq!(value(&Frame::Integer(-1), Encoding::Base64), json!(-1));
    }

    #[test]
    fn errors_and_results_are_entries() {
        assert_eq!(
            entry(&Frame::error("ERR no"), Encoding::Base64),
            json!({"error": "ERR no"})
        );
        assert_eq!(entry(&Frame::Null, Encoding::Json), json!({"result": null}));
        assert_eq!(
            value(&Frame::Bulk(Bytes::from_static(b"a\xffb")), Encoding::Json),
            json!("a\u{fffd}b")
        );
    }
}
