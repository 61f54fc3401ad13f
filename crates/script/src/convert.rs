//! Redis's conversions between replies and Lua values: a command's reply as
//! `redis.call` hands it to the script (per the protocol the script chose
//! with `redis.setresp`), and what a script returns as the reply its caller
//! gets.

use bytes::Bytes;
use meridian_resp::Frame;
use mlua::{Lua, Table, Value};

/// Nesting beyond this in a script's result is answered with an error, as
/// Redis answers when its Lua stack runs out.
const REPLY_DEPTH_MAX: usize = 200;

/// Redis's error table for `text`: `-CODE message` keeps its code, a bare
/// message gets `ERR`; trailing line breaks are dropped.
pub fn error_table(lua: &Lua, text: &str) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("err", error_text(text))?;
    Ok(t)
}

fn error_text(text: &str) -> String {
    let (code, msg) = match text.strip_prefix('-') {
        Some(rest) => match rest.split_once(' ') {
            Some((code, msg)) => (code, msg),
            None => ("ERR", rest),
        },
        None => ("ERR", text),
    };
    format!("{code} {}", msg.trim_end_matches(['\r', '\n']))
}

/// A reply as a Lua value, as Redis converts it for `redis.call`.
pub fn frame_to_lua(lua: &Lua, frame: &Frame, resp3: bool) -> mlua::Result<Value> {
    Ok(match frame {
        Frame::Simple(s) => {
            let t = lua.create_table()?;
            t.raw_set("ok", lua.create_string(s)?)?;
            Value::Table(t)
        }
        Frame::Error(text) => {
            let t = lua.create_table()?;
            t.raw_set("err", error_text(&format!("-{text}")))?;
            t.raw_set("ignore_error_stats_update", true)?;
            Value::Table(t)
        }
        Frame::Integer(n) => Value::Number(*n as f64),
        Frame::Bulk(b) => Value::String(lua.create_string(b)?),
        Frame::Null | Frame::NullArray if resp3 => Value::Nil,
        Frame::Null | Frame::NullArray => Value::Boolean(false),
        Frame::Array(items) | Frame::Push(items) => array(lua, items, resp3)?,
        Frame::Set(items) if resp3 => {
            let set = lua.create_table()?;
            for item in items {
                set.raw_set(frame_to_lua(lua, item, resp3)?, true)?;
            }
            wrapped(lua, "set", Value::Table(set))?
        }
        Frame::Set(items) => array(lua, items, resp3)?,
        Frame::Map(pairs) if resp3 => {
            let map = lua.create_table()?;
            for (k, v) in pairs {
                map.raw_set(frame_to_lua(lua, k, resp3)?, frame_to_lua(lua, v, resp3)?)?;
            }
            wrapped(lua, "map", Value::Table(map))?
        }
        Frame::Map(pairs) => {
            let t = lua.create_table_with_capacity(pairs.len() * 2, 0)?;
            for (i, (k, v)) in pairs.iter().enumerate() {
                t.raw_set(2 * i + 1, frame_to_lua(lua, k, resp3)?)?;
                t.raw_set(2 * i + 2, frame_to_lua(lua, v, resp3)?)?;
            }
            Value::Table(t)
        }
        Frame::Double(d) if resp3 => wrapped(lua, "double", Value::Number(*d))?,
        Frame::Double(d) => Value::String(lua.create_string(format_g(*d, 17))?),
        // Redis hands Lua the number its reply text reads back as, which
        // for a coordinate below 1 has fewer digits than the double had.
        Frame::HumanDouble(d) if resp3 => {
            let text = meridian_resp::format_long_double(*d);
            wrapped(lua, "double", Value::Number(text.parse().unwrap_or(*d)))?
        }
        Frame::HumanDouble(d) => {
            Value::String(lua.create_string(meridian_resp::format_long_double(*d))?)
        }
        Frame::Boolean(b) if resp3 => Value::Boolean(*b),
        Frame::Boolean(b) => Value::Number(*b as u8 as f64),
        Frame::BigNumber(s) if resp3 => {
            wrapped(lua, "big_number", Value::String(lua.create_string(s)?))?
        }
        Frame::BigNumber(s) => Value::String(lua.create_string(s)?),
        Frame::Verbatim { format, text } if resp3 => {
            let v = lua.create_table()?;
            v.raw_set("format", lua.create_string(format)?)?;
            v.raw_set("string", lua.create_string(text)?)?;
            wrapped(lua, "verbatim_string", Value::Table(v))?
        }
        Frame::Verbatim { text, .. } => Value::String(lua.create_string(text)?),
    })
}

fn array(lua: &Lua, items: &[Frame], resp3: bool) -> mlua::Result<Value> {
    let t = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, item) in items.iter().enumerate() {
        t.raw_set(i + 1, frame_to_lua(lua, item, resp3)?)?;
    }
    Ok(Value::Table(t))
}

fn wrapped(lua: &Lua, field: &str, value: Value) -> mlua::Result<Value> {
    let t = lua.create_table()?;
    t.raw_set(field, value)?;
    Ok(Value::Table(t))
}

/// What a script returned as the reply its caller gets. `script_resp3`:
/// the protocol the script chose (booleans are RESP3 booleans only then).
pub fn lua_to_frame(value: &Value, script_resp3: bool) -> Frame {
    to_frame(value, script_resp3, 0)
}

fn to_frame(value: &Value, resp3: bool, depth: usize) -> Frame {
    if depth > REPLY_DEPTH_MAX {
        return Frame::error("ERR reached lua stack limit");
    }
    match value {
        Value::String(s) => Frame::Bulk(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Boolean(b) if resp3 => Frame::Boolean(*b),
        Value::Boolean(true) => Frame::Integer(1),
        Value::Boolean(false) => Frame::Null,
        Value::Number(n) => Frame::Integer(*n as i64),
        Value::Integer(n) => Frame::Integer(*n),
        Value::Table(t) => table_to_frame(t, resp3, depth),
        _ => Frame::Null,
    }
}

fn string_field(t: &Table, name: &str) -> Option<Bytes> {
    match t.raw_get::<Value>(name).ok()? {
        Value::String(s) => Some(Bytes::copy_from_slice(&s.as_bytes())),
        _ => None,
    }
}

fn table_to_frame(t: &Table, resp3: bool, depth: usize) -> Frame {
    if let Some(err) = string_field(t, "err") {
        return Frame::Error(String::from_utf8_lossy(&err).into_owned());
    }
    if let Some(ok) = string_field(t, "ok") {
        return Frame::Simple(String::from_utf8_lossy(&ok).into_owned());
    }
    if let Ok(Value::Number(d)) = t.raw_get::<Value>("double") {
        return Frame::Double(d);
    }
    if let Some(big) = string_field(t, "big_number") {
        let text = String::from_utf8_lossy(&big).replace(['\r', '\n'], " ");
        return Frame::BigNumber(text);
    }
    if let Ok(Value::Table(v)) = t.raw_get::<Value>("verbatim_string") {
        if let (Some(format), Some(text)) = (string_field(&v, "format"), string_field(&v, "string"))
        {
            let mut f = [b' '; 3];
            for (d, s) in f.iter_mut().zip(format.iter()) {
                *d = *s;
            }
            return Frame::Verbatim { format: f, text };
        }
    }
    if let Ok(Value::Table(map)) = t.raw_get::<Value>("map") {
        let pairs = map
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(k, v)| {
                (
                    to_frame(&k, resp3, depth + 1),
                    to_frame(&v, resp3, depth + 1),
                )
            })
            .collect();
        return Frame::Map(pairs);
    }
    if let Ok(Value::Table(set)) = t.raw_get::<Value>("set") {
        let members = set
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(k, _)| to_frame(&k, resp3, depth + 1))
            .collect();
        return Frame::Set(members);
    }
    let mut items = Vec::new();
    for i in 1.. {
        match t.raw_get::<Value>(i) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(v) => items.push(to_frame(&v, resp3, depth + 1)),
        }
    }
    Frame::Array(items)
}

/// The reply for a script that raised `value` (a table the error handler
/// filled with `err`, `source` and `line`), as Redis words it.
pub fn script_error(value: &Value, name: &str) -> Frame {
    let Value::Table(t) = value else {
        let msg = match value {
            Value::String(s) => String::from_utf8_lossy(&s.as_bytes()).into_owned(),
            _ => "execution failure".to_string(),
        };
        return Frame::error(format!("ERR Error running script {name}, {msg:.100}"));
    };
    let msg = string_field(t, "err")
        .map(|e| String::from_utf8_lossy(&e).into_owned())
        .unwrap_or_else(|| "ERR unknown error".to_string());
    let source = string_field(t, "source").map(|s| String::from_utf8_lossy(&s).into_owned());
    let line = match t.raw_get::<Value>("line") {
        Ok(Value::Number(n)) => Some(format_g(n, 14)),
        Ok(Value::Integer(n)) => Some(n.to_string()),
        Ok(Value::String(s)) => Some(String::from_utf8_lossy(&s.as_bytes()).into_owned()),
        _ => None,
    };
    match (source, line) {
        (Some(source), Some(line)) => {
            Frame::Error(format!("{msg} script: {name}, on {source}:{line}."))
        }
        _ => Frame::Error(msg),
    }
}

/// `n` as C's `printf("%.<precision>g")` writes it.
pub fn format_g(n: f64, precision: usize) -> String {
    if n.is_nan() {
        return if n.is_sign_negative() { "-nan" } else { "nan" }.to_string();
    }
    if n.is_infinite() {
        return if n < 0.0 { "-inf" } else { "inf" }.to_string();
    }
    if n == 0.0 {
        return if n.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let precision = precision.max(1);
    let sci = format!("{:.*e}", precision - 1, n);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= precision as i32 {
        let mantissa = strip_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (precision as i32 - 1 - exp).max(0) as usize;
        strip_zeros(&format!("{n:.decimals$}")).to_string()
    }
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_printf_g() {
        assert_eq!(format_g(100.5, 17), "100.5");
        assert_eq!(format_g(0.1, 17), "0.10000000000000001");
        assert_eq!(format_g(1e20, 17), "1e+20");
        assert_eq!(format_g(123456789012345678.0, 17), "1.2345678901234568e+17");
        assert_eq!(format_g(0.0001, 14), "0.0001");
        assert_eq!(format_g(0.00001, 14), "1e-05");
        assert_eq!(format_g(3.0, 14), "3");
        assert_eq!(format_g(-2.5, 14), "-2.5");
    }

    #[test]
    fn error_texts_keep_or_get_a_code() {
        assert_eq!(error_text("-WRONGTYPE bad"), "WRONGTYPE bad");
        assert_eq!(error_text("plain words"), "ERR plain words");
        assert_eq!(error_text("-nospace"), "ERR nospace");
        assert_eq!(error_text("-ERR x\r\n"), "ERR x");
    }
}
